"""SmolVLA checkpoint folders: find them, check them before loading, and this project's metadata.

A checkpoint is a lerobot policy directory (``config.json``, ``model.safetensors``,
``policy_preprocessor.json`` / ``policy_postprocessor.json`` and their state files), as written by
``save_pretrained``, by ``lerobot-train`` (``checkpoints/<step>/pretrained_model/``) or by our
training, plus an optional ``kuavo_smolvla.json`` with this project's metadata. Checks here read
only JSON and safetensors headers, so a broken checkpoint is reported before any model is built.

Command line: ``kuavo-smolvla-inspect CHECKPOINT [--vlm-path DIR]`` prints what was found.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.contract.profile import default_profile
from kuavo_smolvla_ros.features import camera_of

METADATA_FILE = "kuavo_smolvla.json"
METADATA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
#: Where builders place the VLM folder inside a checkpoint (used when the recorded path is gone).
VLM_FOLDER = "vlm"
ACTION_MODES = ("absolute", "relative")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file or field at fault."""


@dataclass
class CheckpointMetadata:
    """This project's facts about a checkpoint (``kuavo_smolvla.json``)."""

    robot_type: str = field(default_factory=lambda: default_profile().robot_type)
    joint_names: list[str] = field(default_factory=lambda: list(robot.JOINT_NAMES))
    cameras: list[str] = field(default_factory=lambda: list(default_profile().camera_names))
    #: "absolute": the policy outputs target positions; "relative": action - state (state added back).
    action_mode: str = "absolute"
    #: Task instructions the checkpoint was trained on.
    instructions: list[str] = field(default_factory=list)
    #: Training stage (1..4) for sequential checkpoints, 0 otherwise.
    stage: int = 0
    #: Where the normalisation statistics came from (datasets, aggregation).
    normalization: str = ""
    origin: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = METADATA_VERSION

    def save(self, folder: str | Path) -> Path:
        """Write ``kuavo_smolvla.json`` into the existing ``folder``, complete or not at all (values JSON does
        not know, e.g. paths, as strings); returns its path. Raises ``OSError`` if it cannot be written."""
        from kuavo_smolvla_ros.atomic import write_json

        path = Path(folder) / METADATA_FILE
        write_json(path, asdict(self), default=str)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> CheckpointMetadata | None:
        """The metadata in ``folder``, or None for checkpoints written by lerobot alone."""
        path = Path(folder) / METADATA_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            meta = cls(**known)
        except (json.JSONDecodeError, TypeError) as err:
            raise CheckpointError(f"{path}: unreadable metadata ({err})") from None
        if meta.action_mode not in ACTION_MODES:
            raise CheckpointError(f"{path}: action_mode {meta.action_mode!r} is not one of {ACTION_MODES}")
        if list(meta.joint_names) != list(robot.JOINT_NAMES):
            raise CheckpointError(f"{path}: joint_names do not match the Kuavo 16-dim layout {robot.JOINT_NAMES}")
        return meta


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` found: resolved paths and the checked configuration."""

    path: Path
    config: dict[str, Any]
    vlm_path: Path
    cameras: list[str]
    image_shapes: dict[str, tuple[int, ...]]
    metadata: CheckpointMetadata | None
    weight_names: frozenset[str]

    @property
    def chunk_size(self) -> int:
        return int(self.config["chunk_size"])

    @property
    def num_steps(self) -> int:
        return int(self.config["num_steps"])

    @property
    def n_action_steps(self) -> int:
        return int(self.config["n_action_steps"])

    @property
    def action_mode(self) -> str:
        return self.metadata.action_mode if self.metadata else "absolute"


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The policy folder for ``path``: itself, its ``pretrained_model/`` (a lerobot-train step
    folder) or ``checkpoints/last/pretrained_model/`` (a lerobot-train output folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a folder")
    for candidate in (path, path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate.resolve()
    raise CheckpointError(f"checkpoint {path}: no {CONFIG_FILE} (nor pretrained_model/{CONFIG_FILE})")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def _check_processor(folder: Path, name: str) -> None:
    pipeline = _read_json(folder / name)
    for step in pipeline.get("steps", []):
        state_file = step.get("state_file")
        if state_file and not (folder / state_file).is_file():
            raise CheckpointError(f"checkpoint file missing: {folder / state_file} (named by {name})")


def _feature_shape(features: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in features[key]["shape"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{where}: feature {key!r} is missing or has no shape") from None


def weight_names(weights: Path) -> frozenset[str]:
    """Tensor names in a safetensors file (header only; a truncated file is reported)."""
    if not weights.is_file():
        raise CheckpointError(f"checkpoint file missing: {weights}")
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return frozenset(handle.keys())
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights} is not a readable safetensors file ({err})") from None


def _is_vlm_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def resolve_vlm_path(config: dict[str, Any], override: str | Path | None, where: Path) -> Path:
    """The local VLM folder: ``override``, else the one recorded in ``config.json``, else a ``vlm/``
    folder shipped inside the checkpoint (checkpoints that moved with their VLM); never a hub id."""
    if override:
        candidate = Path(override).expanduser()
        if not _is_vlm_folder(candidate):
            raise CheckpointError(f"VLM folder {candidate} (vlm_path override) does not exist or has no {CONFIG_FILE}")
        return candidate.resolve()
    recorded = str(config.get("vlm_model_name", ""))
    for candidate in (Path(recorded).expanduser(), where / VLM_FOLDER):
        if _is_vlm_folder(candidate):
            return candidate.resolve()
    raise CheckpointError(
        f"{where / CONFIG_FILE}: VLM folder {recorded!r} cannot be found locally (moved, or a hub id); "
        "pass vlm_path pointing at a local copy of the VLM (config, processor and tokenizer files)"
    )


def inspect_checkpoint(path: str | Path, vlm_path: str | Path | None = None, kuavo_layout: bool = True
                       ) -> CheckpointInfo:
    """Check a checkpoint folder without building the model; raise :class:`CheckpointError` on a problem.

    ``kuavo_layout=False`` accepts other robots' features (a pretrained base such as lerobot/smolvla_base,
    whose features training replaces by the datasets')."""
    folder = resolve_checkpoint_dir(path)
    config = _read_json(folder / CONFIG_FILE)
    policy_type = config.get("type")
    if policy_type != "smolvla":
        raise CheckpointError(f"{folder / CONFIG_FILE}: policy type is {policy_type!r}, expected 'smolvla'")
    weights = weight_names(folder / WEIGHTS_FILE)
    _check_processor(folder, PREPROCESSOR_FILE)
    _check_processor(folder, POSTPROCESSOR_FILE)

    where = str(folder / CONFIG_FILE)
    inputs, outputs = config.get("input_features") or {}, config.get("output_features") or {}
    if kuavo_layout:
        state_shape = _feature_shape(inputs, features.OBS_STATE, where)
        action_shape = _feature_shape(outputs, features.ACTION, where)
        if state_shape != (robot.STATE_DIM,) or action_shape != (robot.ACTION_DIM,):
            raise CheckpointError(
                f"{where}: state {state_shape} / action {action_shape} do not fit the Kuavo layout "
                f"({robot.STATE_DIM},) / ({robot.ACTION_DIM},)"
            )
    image_shapes = {camera_of(k): _feature_shape(inputs, k, where) for k in inputs if camera_of(k)}
    if not image_shapes and kuavo_layout:
        raise CheckpointError(f"{where}: the policy has no camera input features")
    for key in ("chunk_size", "n_action_steps", "num_steps"):
        if not isinstance(config.get(key), int) or config[key] < 1:
            raise CheckpointError(f"{where}: {key} must be a positive integer, got {config.get(key)!r}")

    metadata = CheckpointMetadata.load(folder)
    return CheckpointInfo(
        path=folder,
        config=config,
        vlm_path=resolve_vlm_path(config, vlm_path, folder),
        cameras=list(image_shapes),
        image_shapes=image_shapes,
        metadata=metadata,
        weight_names=weights,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a SmolVLA checkpoint for the Kuavo node.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--vlm-path", type=Path, default=None, help="override the recorded VLM folder")
    args = parser.parse_args(argv)
    try:
        info = inspect_checkpoint(args.checkpoint, args.vlm_path)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"checkpoint   {info.path}")
    print(f"vlm          {info.vlm_path}")
    print(f"cameras      {', '.join(f'{c} {info.image_shapes[c]}' for c in info.cameras)}")
    print(f"chunk_size   {info.chunk_size}  n_action_steps {info.n_action_steps}  num_steps {info.num_steps}")
    print(f"action_mode  {info.action_mode}  tensors {len(info.weight_names)}")
    if info.metadata and info.metadata.origin:
        print(f"origin       {info.metadata.origin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
