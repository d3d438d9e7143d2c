"""pip installation of the Python parts (runtime, training, conversion) on machines without ROS.

On a ROS 2 robot the package is built by colcon through CMakeLists.txt (package.xml says
ament_cmake), which also generates the interfaces in msg/. This file is for `pip install .[...]`.
"""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "kuavo_smolvla_ros"
HERE = Path(__file__).parent


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    files = sorted(str(p) for p in (HERE / folder).glob(pattern) if p.is_file())
    return f"share/{PACKAGE}/{folder}", [str(Path(f).relative_to(HERE)) for f in files]


LEROBOT = "lerobot[smolvla]>=0.6.1,<0.7"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="SmolVLA vision-language-action policy for the Leju Kuavo humanoid under ROS 2",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.12",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        (f"share/{PACKAGE}", ["package.xml"]),
        share("config", "*.yaml"),
        share("config/conversion", "*.yaml"),
        share("config/robots", "*.yaml"),
        share("launch", "*.py"),
        share("msg", "*.msg"),
    ],
    install_requires=["numpy>=2.0", "pyyaml>=6"],
    extras_require={
        # The policy runtime (open checkpoints, predict chunks, build tiny checkpoints).
        "policy": [LEROBOT, "num2words", "simplejpeg>=1.7"],
        # rosbag -> LeRobot conversion.
        "data": [LEROBOT, "lerobot[dataset]>=0.6.1,<0.7", "rosbags>=0.10", "opencv-python-headless",
                 "simplejpeg>=1.7"],
        # Sequential multi-task training and distillation.
        "training": [
            LEROBOT, "lerobot[dataset]>=0.6.1,<0.7", "num2words", "hydra-core>=1.3", "tensorboard",
            "matplotlib",
        ],
        "dev": ["pytest", "pytest-timeout", "ruff"],
    },
    entry_points={
        "console_scripts": [
            "kuavo-smolvla-tiny = kuavo_smolvla_ros.entry:tiny",
            "kuavo-smolvla-inspect = kuavo_smolvla_ros.entry:inspect",
            "kuavo-rosbag-to-lerobot = kuavo_smolvla_ros.entry:rosbag_to_lerobot",
            "policy_node = kuavo_smolvla_ros.entry:policy_node",
            "sim_robot = kuavo_smolvla_ros.entry:sim_robot",
            "kuavo-sim-record = kuavo_smolvla_ros.entry:sim_record",
            "kuavo-sim-eval = kuavo_smolvla_ros.entry:sim_eval",
        ],
    },
)
