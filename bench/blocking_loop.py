"""Baseline for the control-loop benchmark: the lerobot-style blocking loop as a ROS 2 node.

Every control tick calls ``policy.select_action`` (lerobot's own queue: a whole chunk is inferred
in the timer callback each ``n_action_steps`` ticks) and publishes the action, as the users' ROS 1
loop and lerobot's record/eval loops do. Same inputs, topics and checkpoint as ``policy_node``.

Usage: python bench/blocking_loop.py CHECKPOINT RATE_HZ {raw,compressed}
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_bench import bench_profile  # this folder (the script's) is on sys.path
from sensor_msgs.msg import CompressedImage, Image, JointState

from kuavo_smolvla_ros import features, images, robot
from kuavo_smolvla_ros.contract.end_effectors import named_values
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.policy.runtime import PolicyRuntime
from kuavo_smolvla_ros.ros import messages
from kuavo_smolvla_ros.ros.spin import spin_node
from kuavo_smolvla_ros.tasks import default_catalog


class BlockingLoop(Node):
    def __init__(self, checkpoint: str, rate_hz: float, camera_type: str):
        super().__init__("blocking_loop")
        # Only to load the same weights and processors; inference below is lerobot's select_action.
        runtime = PolicyRuntime.open(checkpoint, n_action_steps=8)
        self.policy, self.pre, self.post = runtime.policy, runtime.preprocessor, runtime.postprocessor
        self.policy.reset()
        self.instruction = default_catalog().get(1).instruction
        self.latest: dict[str, object] = {}
        msg_type = CompressedImage if camera_type == "compressed" else Image
        self.profile = bench_profile(camera_type)
        for camera in self.profile.cameras:
            self.create_subscription(msg_type, camera.topic, lambda m, n=camera.name: self.latest.__setitem__(n, m),
                                     qos_profile_sensor_data)
        self.create_subscription(JointState, self.profile.state.topic,
                                 lambda m: self.latest.__setitem__("state", m), qos_profile_sensor_data)
        self.publisher = self.create_publisher(JointState, "/kuavo_smolvla/action", 10)
        self.create_timer(1.0 / rate_hz, self.tick)

    def _image(self, msg) -> np.ndarray:
        if isinstance(msg, CompressedImage):
            return images.compressed_frame(msg.format, msg.data)()
        return images.raw_frame(msg.encoding, msg.height, msg.width, msg.step, msg.data)()

    def tick(self) -> None:
        if len(self.latest) < len(self.profile.cameras) + 1:
            return
        batch = {image_key(c.name): torch.from_numpy(self._image(self.latest[c.name]))
                 .permute(2, 0, 1).float().div(255.0) for c in self.profile.cameras}
        batch[features.OBS_STATE] = torch.from_numpy(_state(self.latest["state"])).float()
        batch["task"] = self.instruction
        with torch.inference_mode():
            action = self.post(self.policy.select_action(self.pre(batch)))[0].numpy()
        self.publisher.publish(messages.action_joint_state(action.astype(np.float64),
                                                           self.get_clock().now().to_msg()))


def main() -> int:
    checkpoint, rate, camera_type = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    return spin_node(lambda: BlockingLoop(checkpoint, rate, camera_type))


if __name__ == "__main__":
    raise SystemExit(main())


def _state(msg: JointState) -> np.ndarray:
    return named_values(msg.name, msg.position, robot.JOINT_NAMES, "joint state", allow_extra=True)
