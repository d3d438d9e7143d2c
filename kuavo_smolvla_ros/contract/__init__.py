"""The robot I/O contract: one declarative profile per robot (``config/robots/*.yaml``) read by the policy node,
the bag converter, the simulator and the recorder.

- :mod:`.profile`: the profile schema, loading, and the overrides a user may apply;
- :mod:`.end_effectors`: one class per end-effector kind (messages, units both ways, limits);
- :mod:`.kuavo`: Kuavo's ``SensorsData`` and ``/kuavo_arm_traj`` <-> the 16-dim layout, both ways;
- :mod:`.streams`: a profile's streams, :class:`~.streams.StreamDecoder` (messages -> samples, shared by the
  node and the converter) and :class:`~.streams.StreamEncoder` (values -> messages, for the simulator and
  the recorder);
- :mod:`.fields`: messages as plain field mappings; :mod:`.schema`: strict YAML loading.

No ROS imports: everything here works on rclpy messages and rosbags records alike.
"""
