"""ROS-free control logic of the policy node: scheduling chunks, safety, statistics, inference worker."""
