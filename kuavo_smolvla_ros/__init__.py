"""kuavo_smolvla_ros: SmolVLA on the Leju Kuavo humanoid under ROS 2.

In a colcon install this package is merged with the interfaces rosidl generates
(``kuavo_smolvla_ros.msg``). When running from a source checkout, the generated ``msg`` sub-package
lives in the colcon ``install/`` tree; extending ``__path__`` lets both halves import as one package.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
