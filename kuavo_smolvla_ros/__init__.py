"""kuavo_smolvla_ros: SmolVLA on the Leju Kuavo humanoid under ROS 2.

Layers (lower ones never import higher ones; ``test_contract`` scans the imports):

- core, no ROS and no torch: :mod:`.robot` (the 16-dim layout and limits), :mod:`.features` (lerobot's
  feature keys), :mod:`.contract` (robot profiles, end effectors, the Kuavo codecs, stream decoding and
  encoding), :mod:`.sync` (stream buffers), :mod:`.images`, :mod:`.observation`, :mod:`.tasks`;
- :mod:`.policy`: checkpoints and the SmolVLA runtime (torch, lerobot);
- :mod:`.control`: scheduler, safety, inference worker and the controller the node runs;
- :mod:`.data`: bags, episodes from a robot profile, LeRobot writing, conversion, validation;
- :mod:`.training`: sequential fine-tuning and reflow distillation;
- :mod:`.sim`: the simulated Kuavo and closed-loop evaluation;
- :mod:`.ros`: the rclpy nodes (imported by nothing else).

In a colcon install this package is merged with the interfaces rosidl generates
(``kuavo_smolvla_ros.msg``). When running from a source checkout, the generated ``msg`` sub-package
lives in the colcon ``install/`` tree; extending ``__path__`` lets both halves import as one package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
