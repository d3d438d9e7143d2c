"""The repository is one ROS 2 package (colcon) and a pip-installable Python distribution."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "install"
SITE = INSTALL / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _msg_dependencies() -> set[str]:
    deps = set()
    for path in (ROOT / "msg").glob("*.msg"):
        deps |= set(re.findall(r"^\s*([a-z_]+)/\w+", path.read_text(), flags=re.M))
    return deps


def test_package_xml_declares_an_interface_package():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "kuavo_smolvla_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    depends = {e.text for e in root if e.tag in ("depend", "build_depend")}
    assert _msg_dependencies() <= depends, "every package used in msg/ must be a <depend>"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for dep in _msg_dependencies():
        assert f"find_package({dep} REQUIRED)" in cmake


@pytest.mark.skipif(not SITE.is_dir(), reason="colcon install/ not built (make setup)")
def test_colcon_install_holds_messages_modules_and_share_files():
    package = SITE / "kuavo_smolvla_ros"
    assert (package / "msg" / "_action_chunk.py").is_file()
    assert (package / "robot.py").is_file() and (package / "policy" / "runtime.py").is_file()
    assert (package / "policy" / "__init__.py").is_file()
    share = INSTALL / "share" / "kuavo_smolvla_ros"
    assert (share / "config" / "tasks.yaml").is_file() and (share / "package.xml").is_file()
    index = INSTALL / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / "kuavo_smolvla_ros").is_file()
    assert "msg/ActionChunk.msg" in (index / "rosidl_interfaces" / "kuavo_smolvla_ros").read_text()


@pytest.mark.skipif(not SITE.is_dir(), reason="colcon install/ not built (make setup)")
def test_robot_side_imports_come_from_the_colcon_install(tmp_path):
    """As on a robot: only the install tree on PYTHONPATH, no source checkout in sight."""
    env = dict(os.environ, PYTHONPATH=str(SITE), KUAVO_SMOLVLA_SHARE="")
    code = (
        "import kuavo_smolvla_ros.robot as r, kuavo_smolvla_ros.tasks as t\n"
        "from kuavo_smolvla_ros.msg import ActionChunk\n"
        "from kuavo_smolvla_ros.resources import share_file\n"
        "print(r.__file__); print(share_file('config/tasks.yaml')); print(len(t.default_catalog()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    assert out[0].startswith(str(SITE)), out
    assert out[1] == str(INSTALL / "share" / "kuavo_smolvla_ros" / "config" / "tasks.yaml")
    assert out[2] == "4"


def test_pip_wheel_carries_the_python_parts_and_share_files(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=300, capture_output=True)
    (wheel,) = tmp_path.glob("kuavo_smolvla_ros-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "kuavo_smolvla_ros/policy/runtime.py" in names and "kuavo_smolvla_ros/robot.py" in names
    assert not any(n.startswith("kuavo_smolvla_ros/msg/") for n in names), "generated interfaces come from colcon"
    assert any(n.endswith("data/share/kuavo_smolvla_ros/config/tasks.yaml") for n in names)
    assert any(n.endswith("data/share/kuavo_smolvla_ros/msg/SensorsData.msg") for n in names)  # for reading bags
    assert any(n.endswith("data/share/kuavo_smolvla_ros/config/conversion/kuavo.yaml") for n in names)
    assert any(n.endswith("data/share/kuavo_smolvla_ros/config/robots/kuavo5.yaml") for n in names)
    assert "kuavo-smolvla-tiny = kuavo_smolvla_ros.entry:tiny" in entry_points
    assert "kuavo-rosbag-to-lerobot = kuavo_smolvla_ros.entry:rosbag_to_lerobot" in entry_points
    assert 'Provides-Extra: training' in metadata and 'Provides-Extra: policy' in metadata


def test_tiny_checkpoint_command_line(tmp_path):
    bindir = Path(sys.executable).parent
    out = subprocess.run([bindir / "kuavo-smolvla-tiny", str(tmp_path / "ck"), "--cameras", "head_cam_h",
                          "--image-size", "32", "48", "--seed", "3"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert f"wrote tiny SmolVLA checkpoint to {tmp_path / 'ck'} (cameras: head_cam_h)" in out
    shown = subprocess.run([bindir / "kuavo-smolvla-inspect", str(tmp_path / "ck")],
                           capture_output=True, text=True, timeout=300, check=True).stdout
    assert "head_cam_h (3, 32, 48)" in shown


def test_converter_command_line(tmp_path):
    from kuavo_smolvla_ros.data.synthetic import SyntheticBag, write_synthetic_bag

    write_synthetic_bag(tmp_path / "bags" / "a.bag", "ros1", SyntheticBag(seconds=2))
    tool = Path(sys.executable).parent / "kuavo-rosbag-to-lerobot"
    converted = subprocess.run([tool, "convert", str(tmp_path / "bags"), "-o", str(tmp_path / "ds"), "-t", "sorting",
                                "--png", "-q"], capture_output=True, text=True, timeout=300)
    assert converted.returncode == 0, converted.stderr
    assert "ds: 1 episode(s) added (14 frames), 0 skipped, 0 failed, 1 in the dataset" in converted.stdout
    checked = subprocess.run([tool, "validate", str(tmp_path / "ds")], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and checked.stdout.startswith("OK: ")
    assert "torchcodec" not in checked.stdout + checked.stderr  # no decoder-probing noise for users
