"""Shared fixtures: an isolated ROS 2 domain and Hugging Face cache, tiny SmolVLA checkpoints built offline."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# A private Hugging Face cache for the session (read by huggingface_hub at import, so set before it): the
# checkpoints built here put their VLM in it as they do on a user's machine, and a developer's own cache
# (which may hold the real SmolVLM2) does not change what the tests see.
_HF_CACHE = tempfile.mkdtemp(prefix="kuavo-test-hf-cache-")
os.environ["HF_HUB_CACHE"] = _HF_CACHE
# A private DDS domain per test session, discovery limited to this machine.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# Two cores: keep torch from oversubscribing them when a ROS node runs beside it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _private_hf_cache():
    yield _HF_CACHE
    shutil.rmtree(_HF_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random SmolVLA checkpoint for the Kuavo layout (read-only: copy it to modify)."""
    from kuavo_smolvla_ros.policy.tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture()
def checkpoint_copy(tiny_checkpoint, tmp_path) -> Path:
    """A private, modifiable copy of the tiny checkpoint without its shipped ``vlm/`` folder (the VLM is found in
    the Hugging Face cache, where the builder put it)."""
    target = tmp_path / "checkpoint"
    shutil.copytree(tiny_checkpoint, target, ignore=shutil.ignore_patterns("vlm"))
    return target


@pytest.fixture()
def ros_node():
    """An rclpy context and node, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"test_node_{os.getpid()}", context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
