"""The rclpy layer, thin over the ROS-free core: the product node ``policy_node`` (:mod:`.policy_node`, its
parameters in :mod:`.params`, its outgoing messages in :mod:`.messages`), rclpy messages from the contract's
field mappings (:mod:`.fields`), and the simulator tooling: ``sim_robot`` (:mod:`.sim_node`,
:mod:`.sim_params`), the operator that drives both over ROS (:mod:`.sim_operator`) and :mod:`.bringup`."""
