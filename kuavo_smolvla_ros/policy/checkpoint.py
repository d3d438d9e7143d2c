"""SmolVLA checkpoint folders: find them, check them before loading, keep them portable, and this
project's metadata.

A checkpoint is a lerobot policy directory (``config.json``, ``model.safetensors``,
``policy_preprocessor.json`` / ``policy_postprocessor.json`` and their state files), as written by
``save_pretrained``, by ``lerobot-train`` (``checkpoints/<step>/pretrained_model/``) or by our
training, plus an optional ``kuavo_smolvla.json`` with this project's metadata.

:func:`inspect_checkpoint` refuses, with a :class:`CheckpointError` naming the file and the key, whatever
would make the runtime fail later or predict wrongly: missing or unreadable files; ``config.json`` fields
the installed lerobot's ``SmolVLAConfig`` does not know, or required ones missing; tensor names under a
foreign prefix (``_orig_mod.``, ``module.``, ``model.model.``) or that do not fit the architecture
``config.json`` describes (compared on torch's meta device: no memory, no weights read); normaliser
statistics that do not cover the state and action features, are not finite or have no spread; a VLM
folder that cannot be found. ``PolicyRuntime.open`` runs it first, so the two refuse the same checkpoints.

The VLM: ``config.json``'s ``vlm_model_name`` (and the tokenizer name in ``policy_preprocessor.json``) hold a
hub id, never a path of the machine that wrote them, so a checkpoint folder can be moved or copied:

- the real SmolVLM2 keeps its hub id (``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``, as
  ``lerobot/smolvla_base`` records it), found in the local Hugging Face cache (``HF_HOME`` /
  ``HF_HUB_CACHE``; fetched once with ``hf download``);
- a VLM folder without weights (the offline builders' config, processor and tokenizer: a few hundred KB)
  is shipped inside the checkpoint as ``vlm/`` and named by its content, ``kuavo-smolvla/vlm-<hash>``;
  our writers also put it in the local Hugging Face cache under that name, so lerobot's own loader
  (``SmolVLAPolicy.from_pretrained`` + ``make_pre_post_processors``) finds it from any working directory.

Our runtime looks for the VLM folder in this order: a ``vlm_path`` override, the checkpoint's ``vlm/``, a
recorded local folder (checkpoints written before this scheme), the Hugging Face cache.

Relative actions: the processors carry them (lerobot's relative/absolute action steps,
``policy/processors.py``); ``kuavo_smolvla.json``'s ``action_mode`` is provenance and must agree.

Command line: ``kuavo-smolvla-inspect CHECKPOINT [--vlm-path DIR] [--make-portable [--vlm-hub-id ID]]
[--strip-prefix PREFIX] [--upgrade-relative]`` checks a checkpoint (exit 0, or 1 with one ``error:`` line)
and prints what was found; ``--make-portable``, ``--strip-prefix`` and ``--upgrade-relative`` repair
checkpoints in place first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.contract.profile import default_profile
from kuavo_smolvla_ros.features import camera_of
from kuavo_smolvla_ros.policy.errors import CheckpointError
from kuavo_smolvla_ros.policy.processors import (
    ACTION_MODES,
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    RELATIVE_STEP,
    pipeline_action_mode,
    with_relative_steps,
)

LOG = logging.getLogger(__name__)

METADATA_FILE = "kuavo_smolvla.json"
METADATA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: lerobot-train's record of a run's settings, beside ``config.json``.
TRAIN_CONFIG_FILE = "train_config.json"
#: Where a checkpoint ships its VLM folder (config, processor, tokenizer) when it is small enough.
VLM_FOLDER = "vlm"
#: Hub-id namespace of shipped VLM folders: ``kuavo-smolvla/vlm-<first 16 hex of the content's sha256>``.
SHIPPED_VLM_PREFIX = "kuavo-smolvla/vlm-"
#: A VLM folder is shipped inside checkpoints when it holds no weights and at most this many bytes.
SHIP_LIMIT_BYTES = 64 * 2**20
#: ``config.json`` fields whose lerobot default would silently build another model or pipeline.
REQUIRED_CONFIG_FIELDS = (
    "input_features", "output_features", "normalization_mapping", "chunk_size", "n_action_steps", "num_steps",
    "max_state_dim", "max_action_dim", "resize_imgs_with_padding", "tokenizer_max_length", "vlm_model_name",
    "num_vlm_layers", "num_expert_layers", "self_attn_every_n_layers", "expert_width_multiplier",
    "attention_mode", "add_image_special_tokens", "prefix_length", "pad_language_to", "min_period", "max_period",
)
#: Statistics each lerobot normalisation mode reads (``lerobot.processor.normalize_processor``).
STATS_BY_MODE = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max"), "QUANTILES": ("q01", "q99"),
                 "QUANTILE10": ("q10", "q90")}
#: The normaliser step of each processor file and the feature it must cover at inference.
NORMALISER_STEPS = {PREPROCESSOR_FILE: ("normalizer_processor", features.OBS_STATE, "STATE"),
                    POSTPROCESSOR_FILE: ("unnormalizer_processor", features.ACTION, "ACTION")}
#: What leaves a prefix in front of SmolVLA's ``model.`` tensor names.
FOREIGN_PREFIXES = {"_orig_mod.": "saved from a torch.compile'd model",
                    "module.": "saved from a DistributedDataParallel/DataParallel wrapper",
                    "model.": "saved from a wrapper that holds the policy as 'model'"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".msgpack", ".h5", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_KEYS = ("lerobot_version", "version")


@dataclass
class CheckpointMetadata:
    """This project's facts about a checkpoint (``kuavo_smolvla.json``)."""

    robot_type: str = field(default_factory=lambda: default_profile().robot_type)
    joint_names: list[str] = field(default_factory=lambda: list(robot.JOINT_NAMES))
    cameras: list[str] = field(default_factory=lambda: list(default_profile().camera_names))
    #: Provenance: "absolute" (the policy was trained on target positions) or "relative" (on action - state).
    #: The processors apply it (lerobot's relative/absolute action steps); the two must agree.
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
    #: The lerobot version that wrote the checkpoint ("" when not recorded).
    lerobot_version: str = ""

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
    #: ``vlm_model_name`` as ``config.json`` records it (a hub id, or a path for older checkpoints).
    vlm_name: str = ""
    #: Where ``vlm_path`` was found: "override", "shipped", "recorded path" or "Hugging Face cache".
    vlm_source: str = ""
    #: The VLM's hub id, when there is one (recorded, or read from the cache folder it was found in).
    vlm_hub_id: str | None = None
    #: lerobot's ``SmolVLAConfig`` parsed from ``config.json`` (before any override); None if not parsed.
    policy_config: Any = None
    #: Things worth knowing that do not stop the checkpoint from running (printed by the command line).
    notes: list[str] = field(default_factory=list)
    #: "relative" when the saved processors convert actions with lerobot's relative/absolute action steps.
    action_mode: str = "absolute"

    @property
    def chunk_size(self) -> int:
        return int(self.config["chunk_size"])

    @property
    def num_steps(self) -> int:
        return int(self.config["num_steps"])

    @property
    def n_action_steps(self) -> int:
        return int(self.config["n_action_steps"])


# --------------------------------------------------------------------------------------------- files
def share_files(folder: str | Path) -> None:
    """Give every file in ``folder`` (recursively) the permissions the process's umask allows for new files
    (e.g. 0644): safetensors writes its files 0600, which a robot's node running as another user after an
    ``rsync -a`` could not read."""
    mask = os.umask(0)
    os.umask(mask)
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~mask)


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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as ``path``, indented as lerobot writes its JSON files, complete or not at all."""
    from kuavo_smolvla_ros.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=4) + "\n")


def _one_line(err: BaseException) -> str:
    """``err``'s root cause (what parsers such as draccus wrap) as "Type: message" on one line."""
    seen = {id(err)}
    while (inner := err.__cause__ or err.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _check_processor(folder: Path, name: str) -> dict[str, Any]:
    """The processor pipeline ``folder/name``; every state file it names must exist."""
    pipeline = _read_json(folder / name)
    for step in pipeline.get("steps", []):
        state_file = step.get("state_file")
        if state_file and not (folder / state_file).is_file():
            raise CheckpointError(f"checkpoint file missing: {folder / state_file} (named by {name})")
    return pipeline


def _check_processor_steps(folder: Path, name: str, pipeline: dict[str, Any]) -> None:
    """Every step of ``pipeline`` must be one the installed lerobot has registered (else its loader fails)."""
    import lerobot.policies.smolvla.processor_smolvla  # noqa: F401  (registers SmolVLA's steps)
    from lerobot.processor.pipeline import ProcessorStepRegistry

    known = set(ProcessorStepRegistry.list())
    for index, step in enumerate(pipeline.get("steps", [])):
        registry_name = step.get("registry_name")
        if registry_name is not None and registry_name not in known:
            raise CheckpointError(f"{folder / name}: step {index} '{registry_name}' is not a processor step of "
                                  f"lerobot {installed_lerobot_version()} (written by {_writer(folder)})")


def _feature_shape(features: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in features[key]["shape"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{where}: feature {key!r} is missing or has no shape") from None


def weight_names(weights: Path) -> frozenset[str]:
    """Tensor names in a safetensors file (header only; a truncated file is reported)."""
    return frozenset(weight_shapes(weights))


def weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape in a safetensors file (header only; a truncated file is reported)."""
    if not weights.is_file():
        raise CheckpointError(f"checkpoint file missing: {weights}")
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = list(handle.keys())
            return {name: tuple(handle.get_slice(name).get_shape()) for name in names}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights} is not a readable safetensors file ({err})") from None


def installed_lerobot_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lerobot")
    except PackageNotFoundError:
        return "unknown"


def _writer(folder: Path) -> str:
    """Which lerobot wrote the checkpoint, as recorded (``kuavo_smolvla.json``, ``config.json`` or
    ``train_config.json``), e.g. "lerobot 0.6.1 according to kuavo_smolvla.json"."""
    for name in (METADATA_FILE, CONFIG_FILE, TRAIN_CONFIG_FILE):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        for key in _VERSION_KEYS:
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, str) and value:
                return f"lerobot {value} according to {name}"
    return "a lerobot version it does not record"


# ------------------------------------------------------------------------------------- config.json
def _check_config_fields(folder: Path, config: dict[str, Any]) -> None:
    """Refuse fields the installed lerobot's ``SmolVLAConfig`` does not know (its parser would raise) and
    missing :data:`REQUIRED_CONFIG_FIELDS` (it would silently use its defaults)."""
    import dataclasses

    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    where = folder / CONFIG_FILE
    version = installed_lerobot_version()
    known = {f.name: f for f in dataclasses.fields(SmolVLAConfig)}
    unknown = sorted(k for k in config if k != "type" and k not in known)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise CheckpointError(
            f"{where}: field{'s' if len(unknown) > 1 else ''} {names} {'are' if len(unknown) > 1 else 'is'} unknown "
            f"to SmolVLAConfig of the installed lerobot {version} (the checkpoint was written by {_writer(folder)}); "
            "use the lerobot version that wrote it, or delete the field if inference does not depend on it")
    for name in REQUIRED_CONFIG_FIELDS:
        if name not in config:
            spec = known[name]
            default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
            raise CheckpointError(
                f"{where}: required field {name!r} is missing (the checkpoint was written by {_writer(folder)}); "
                f"lerobot {version} would silently use its default {default!r}")


def read_policy_config(folder: Path):
    """lerobot's ``SmolVLAConfig`` parsed from ``folder/config.json`` exactly as ``SmolVLAPolicy.from_pretrained``
    parses it (draccus, then ``__post_init__``'s checks); raises :class:`CheckpointError` instead of their
    errors."""
    import lerobot.policies.smolvla.configuration_smolvla  # noqa: F401  (registers the "smolvla" type)
    from lerobot.configs.policies import PreTrainedConfig

    try:
        return PreTrainedConfig.from_pretrained(str(folder))
    except Exception as err:  # draccus DecodingError, ValueError from __post_init__, ...
        raise CheckpointError(f"{folder / CONFIG_FILE}: lerobot {installed_lerobot_version()} cannot read it: "
                              f"{_one_line(err)} (the checkpoint was written by {_writer(folder)})") from None


# ------------------------------------------------------------------------------- model.safetensors
def _check_prefix(folder: Path, names: frozenset[str]) -> None:
    """Refuse tensor names with something in front of SmolVLA's ``model.vlm_with_expert.``."""
    anchor = "vlm_with_expert."
    heads = {name[: name.index(anchor)] for name in names if anchor in name}
    if len(heads) != 1:
        return  # none, or mixed: the architecture check names the tensors
    head = heads.pop()
    if head == "model.":
        return
    weights = folder / WEIGHTS_FILE
    wrapper = head[: -len("model.")] if head.endswith("model.") else ""
    why = next((why for prefix, why in FOREIGN_PREFIXES.items()
                if wrapper == prefix or (wrapper.startswith(prefix) and prefix != "model.")), "saved from a wrapper")
    if wrapper:
        raise CheckpointError(
            f"{weights}: tensor names start with {head!r} where SmolVLA expects 'model.' ({why}); strip the "
            f"prefix with: kuavo-smolvla-inspect {folder} --strip-prefix {wrapper}")
    raise CheckpointError(f"{weights}: tensor names start with {head!r} where SmolVLA expects 'model.' ({why})")


def strip_prefix(folder: str | Path, prefix: str) -> int:
    """Remove ``prefix`` from the front of every tensor name in ``folder/model.safetensors`` (rewritten whole
    or not at all, its metadata kept); returns how many names changed. Raises :class:`CheckpointError` when
    no name starts with it."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from kuavo_smolvla_ros.atomic import atomic_path

    weights = resolve_checkpoint_dir(folder) / WEIGHTS_FILE
    weight_shapes(weights)  # readable?
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
        names = list(handle.keys())
        tensors = {name: handle.get_tensor(name) for name in names}
    changed = sum(name.startswith(prefix) for name in tensors)
    if not prefix or not changed:
        raise CheckpointError(f"{weights}: no tensor name starts with {prefix!r}")
    renamed = {name.removeprefix(prefix): tensor for name, tensor in tensors.items()}
    if len(renamed) != len(tensors):
        raise CheckpointError(f"{weights}: stripping {prefix!r} would give two tensors the same name")
    with atomic_path(weights) as tmp:
        save_file(renamed, str(tmp), metadata=metadata or {"format": "pt"})
    return changed


def new_smolvla(config):
    """``SmolVLAPolicy(config)`` (lerobot's), without the lines lerobot ``print()``s while it builds one
    ("Reducing the number of VLM layers to N ...", on every load of a checkpoint with fewer layers than its
    VLM, as ``lerobot/smolvla_base`` has): they go to this module's debug log instead of stdout."""
    import contextlib
    import io

    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    with contextlib.redirect_stdout(io.StringIO()) as said:
        policy = SmolVLAPolicy(config)
    for line in said.getvalue().splitlines():
        LOG.debug("lerobot: %s", line)
    return policy


def _expected_tensors(policy_config, vlm_path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor SmolVLA's ``state_dict`` has for ``policy_config`` on the VLM folder
    ``vlm_path``, built on torch's meta device (no memory, no weights)."""
    import copy

    import torch

    config = copy.deepcopy(policy_config)
    config.vlm_model_name = str(vlm_path)
    config.load_vlm_weights = False
    config.device = "cpu"
    try:
        with torch.device("meta"):
            policy = new_smolvla(config)
    except Exception as err:
        raise CheckpointError(f"{vlm_path}: lerobot cannot build SmolVLA on this VLM folder ({_one_line(err)})") \
            from None
    return {name: tuple(tensor.shape) for name, tensor in policy.state_dict().items()}


def examples_of(names) -> str:
    """" (e.g. a, b, c)": up to three of ``names``, sorted ("" for none)."""
    names = sorted(names)
    return f" (e.g. {', '.join(names[:3])})" if names else ""


def architecture_mismatch(weights: Path, missing, unexpected) -> CheckpointError:
    """The error for a weights file with ``missing`` and ``unexpected`` tensor names."""
    return CheckpointError(
        f"{weights} does not match the architecture in config.json: {len(missing)} missing tensors"
        f"{examples_of(missing)}, {len(unexpected)} unexpected{examples_of(unexpected)}")


def check_tensors(weights: Path, found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse a weights file whose tensors (``found``: name -> shape) are not exactly ``expected``."""
    missing, unexpected = set(expected) - set(found), set(found) - set(expected)
    if missing or unexpected:
        raise architecture_mismatch(weights, missing, unexpected)
    wrong = sorted(name for name in expected if tuple(found[name]) != tuple(expected[name]))
    if wrong:
        name = wrong[0]
        raise CheckpointError(f"{weights} does not match the architecture in config.json: {len(wrong)} tensors "
                              f"of another shape (e.g. {name} {found[name]}, expected {expected[name]})")


# ------------------------------------------------------------------------------ normaliser statistics
def _check_statistics(folder: Path, name: str, pipeline: dict[str, Any], config: dict[str, Any]) -> None:
    """The normaliser step of ``name`` must cover its feature (:data:`NORMALISER_STEPS`) with the mode
    ``config.json`` gives its type, and every statistic a step reads must be present under the plain key
    (``<feature>.<stat>``), of the feature's shape, finite, with a positive spread."""
    registry_name, feature, kind = NORMALISER_STEPS[name]
    mapping = config.get("normalization_mapping") or {}
    expected = str(mapping.get(kind, "IDENTITY"))
    steps = [s for s in pipeline.get("steps", []) if s.get("registry_name") in ("normalizer_processor",
                                                                                "unnormalizer_processor")]
    covering = [s for s in steps if s.get("registry_name") == registry_name]
    if expected != "IDENTITY" and not covering:
        raise CheckpointError(f"{folder / name}: no {registry_name} step, so {feature} is left unnormalised "
                              f"(config.json's normalization_mapping gives {kind} {expected})")
    shapes = {**(config.get("input_features") or {}), **(config.get("output_features") or {})}
    for step in steps:
        step_config = step.get("config") or {}
        step_features = step_config.get("features") or {}
        norm_map = step_config.get("norm_map") or {}
        only = step_config.get("normalize_observation_keys")
        if step in covering and expected != "IDENTITY":
            mode = norm_map.get(kind, "IDENTITY")
            if feature not in step_features or (kind != "ACTION" and only is not None and feature not in only):
                raise CheckpointError(f"{folder / name}: step {registry_name} does not cover {feature} (its "
                                      f"features: {', '.join(sorted(step_features)) or 'none'})")
            if mode != expected:
                raise CheckpointError(f"{folder / name}: step {registry_name} normalises {kind} with {mode}, "
                                      f"config.json's normalization_mapping says {expected}")
        state_file = folder / step["state_file"] if step.get("state_file") else folder / name
        stats = _read_statistics(state_file) if step.get("state_file") else {}
        for key, spec in step_features.items():
            kind_of_key = str((spec or {}).get("type"))
            mode = norm_map.get(kind_of_key, "IDENTITY")
            if mode == "IDENTITY" or (kind_of_key != "ACTION" and only is not None and key not in only):
                continue  # lerobot passes it through
            shape = tuple(int(x) for x in (shapes.get(key) or spec).get("shape", ()))
            _check_feature_statistics(state_file, stats, key, mode,
                                      shape if len(shape) == 1 else None, step["registry_name"])


def _read_statistics(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            return {key: handle.get_tensor(key).float().numpy() for key in keys}
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None


def _check_feature_statistics(path: Path, stats: dict[str, Any], feature: str, mode: str,
                              shape: tuple[int, ...] | None, step: str) -> None:
    """``feature``'s statistics for ``mode`` in the state file ``path`` (``stats``): present under
    ``<feature>.<stat>``, of ``shape`` (None: not checked, e.g. images' (3, 1, 1)), finite, with a positive spread."""
    import numpy as np

    if mode not in STATS_BY_MODE:
        raise CheckpointError(f"{path}: {feature} uses normalisation mode {mode!r}, unknown to lerobot")
    low_name, high_name = STATS_BY_MODE[mode]
    values = {}
    for stat in (low_name, high_name):
        key = f"{feature}.{stat}"
        if key not in stats:
            near = sorted(k for k in stats if k.endswith(f".{key}") or k.endswith(f"_{key}"))
            hint = f"found {', '.join(repr(k) for k in near[:3])} instead" if near else \
                f"keys: {', '.join(repr(k) for k in sorted(stats)[:4]) or 'none'}"
            raise CheckpointError(f"{path}: no statistics {key!r} ({hint}); lerobot's {step} would pass "
                                  f"{feature} through unnormalised")
        value = np.asarray(stats[key], dtype=np.float64)
        if shape and value.shape != shape:
            raise CheckpointError(f"{path}: statistics {key!r} have shape {value.shape}, {feature} has {shape}")
        bad = np.flatnonzero(~np.isfinite(value))
        if bad.size:
            raise CheckpointError(f"{path}: statistics {key!r} are not finite ({value.flat[bad[0]]} at index "
                                  f"{int(bad[0])})")
        values[stat] = value
    if mode == "MEAN_STD":
        spread, what = values["std"], f"{feature}.std"
    else:
        spread, what = values[high_name] - values[low_name], f"{feature}.{high_name} - {feature}.{low_name}"
    bad = np.flatnonzero(spread <= 0)
    if bad.size:
        raise CheckpointError(f"{path}: statistics {what!r} must be > 0, got {float(spread.flat[bad[0]])} at index "
                              f"{int(bad[0])} (a feature that never varies cannot be normalised)")


# ------------------------------------------------------------------------------------------ the VLM
def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub repository id (``org/name``), not of a path."""
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~"))


def _is_vlm_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def _vlm_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def is_shippable_vlm(folder: Path) -> bool:
    """Whether the VLM folder holds no weights and at most :data:`SHIP_LIMIT_BYTES` (travels in checkpoints)."""
    files = _vlm_files(folder)
    return not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files) and \
        sum(p.stat().st_size for p in files) <= SHIP_LIMIT_BYTES


def vlm_content_id(folder: Path) -> tuple[str, str]:
    """(hub id, revision) naming the VLM folder by its content: ``kuavo-smolvla/vlm-<16 hex>`` and the first
    40 hex of the sha256 of its files' relative paths and bytes (hidden files left out)."""
    digest = hashlib.sha256()
    for path in _vlm_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    hexdigest = digest.hexdigest()
    return SHIPPED_VLM_PREFIX + hexdigest[:16], hexdigest[:40]


def hub_id_of_cache_folder(folder: Path) -> str | None:
    """``org/name`` when ``folder`` is a snapshot in a Hugging Face cache (``models--org--name/snapshots/REV``)."""
    parts = Path(folder).resolve().parts
    for index in range(len(parts) - 2):
        if parts[index].startswith("models--") and parts[index + 1] == "snapshots":
            org_name = parts[index][len("models--"):].split("--")
            return "/".join(org_name) if len(org_name) == 2 else None
    return None


def cached_vlm(hub_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot folder of ``hub_id`` (its ``main`` revision), or None; never
    contacts the hub."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, CONFIG_FILE)
    except Exception:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cache_vlm(folder: Path, hub_id: str) -> Path:
    """Put the VLM folder ``folder`` in the local Hugging Face cache as ``hub_id`` (revision: its content hash),
    where transformers, and so lerobot's loader, find it offline; returns the snapshot folder. Raises
    ``OSError`` if the cache cannot be written."""
    from huggingface_hub.file_download import repo_folder_name

    from kuavo_smolvla_ros.atomic import atomic_path, temporary_name

    _, revision = vlm_content_id(folder)
    repo = hub_cache_dir() / repo_folder_name(repo_id=hub_id, repo_type="model")
    snapshot = repo / "snapshots" / revision
    if not _is_vlm_folder(snapshot):
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(snapshot)
        try:
            shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(".*"))
            os.replace(tmp, snapshot)
        except OSError:
            if not _is_vlm_folder(snapshot):  # another process may have put the same content there
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    (repo / "refs").mkdir(exist_ok=True)
    ref = repo / "refs" / "main"
    if not ref.is_file() or ref.read_text().strip() != revision:
        with atomic_path(ref) as tmp:
            tmp.write_text(revision)
    return snapshot


def portable_vlm_name(vlm_folder: Path, hub_id: str | None = None) -> str | None:
    """The name a checkpoint records for the VLM folder ``vlm_folder``: its content id when it can be shipped,
    the hub id of the cache snapshot it is, else ``hub_id`` (e.g. the one its source checkpoint recorded);
    None when there is none."""
    if is_shippable_vlm(vlm_folder):
        return vlm_content_id(vlm_folder)[0]
    cached = hub_id_of_cache_folder(vlm_folder)
    if cached:
        return cached
    return hub_id if hub_id and looks_like_hub_id(hub_id) else None


def make_portable(folder: str | Path, vlm_folder: str | Path, hub_id: str | None = None, *,
                  required: bool = True) -> str:
    """Make the checkpoint ``folder`` independent of where it and its VLM are: a shippable VLM folder is
    copied into ``folder/vlm`` and put in the local Hugging Face cache, and ``config.json``'s
    ``vlm_model_name`` and ``policy_preprocessor.json``'s tokenizer name become the portable name
    (:func:`portable_vlm_name`); returns the name recorded. A VLM with weights outside the cache and no
    ``hub_id`` has none: :class:`CheckpointError` if ``required``, else its absolute path is recorded (as
    before this scheme) with a warning."""
    folder = Path(folder)
    if not _is_vlm_folder(Path(vlm_folder)) and looks_like_hub_id(str(vlm_folder)):
        cached = cached_vlm(str(vlm_folder))  # a policy built on a hub id: its cache folder, if there
        if cached is None:
            _record_vlm_name(folder, str(vlm_folder))
            return str(vlm_folder)
        vlm_folder = cached
    vlm_folder = Path(vlm_folder).resolve()
    if not _is_vlm_folder(vlm_folder):
        raise CheckpointError(f"VLM folder {vlm_folder} does not exist or has no {CONFIG_FILE}")
    name = portable_vlm_name(vlm_folder, hub_id)
    if name is None:
        if required:
            raise CheckpointError(
                f"{vlm_folder}: a VLM folder with weights outside the Hugging Face cache has no portable name; "
                "give its hub id (e.g. --vlm-hub-id HuggingFaceTB/SmolVLM2-500M-Video-Instruct)")
        LOG.warning("%s records the VLM by its path %s: it will not open elsewhere (run kuavo-smolvla-inspect "
                    "CHECKPOINT --make-portable --vlm-hub-id ID)", folder, vlm_folder)
        name = str(vlm_folder)
    elif is_shippable_vlm(vlm_folder):
        shipped = folder / VLM_FOLDER
        if shipped.resolve() != vlm_folder:
            shutil.rmtree(shipped, ignore_errors=True)
            shutil.copytree(vlm_folder, shipped, ignore=shutil.ignore_patterns(".*"))
        try:
            cache_vlm(shipped, name)
        except OSError as err:
            LOG.warning("could not put the VLM in the Hugging Face cache %s (%s): lerobot's own loader will not "
                        "find %s until it is there", hub_cache_dir(), err, name)
    _record_vlm_name(folder, name)
    return name


def _record_vlm_name(folder: Path, name: str) -> None:
    config = _read_json(folder / CONFIG_FILE)
    if config.get("vlm_model_name") != name:
        _write_json(folder / CONFIG_FILE, {**config, "vlm_model_name": name})
    pipeline = _read_json(folder / PREPROCESSOR_FILE)
    changed = False
    for step in pipeline.get("steps", []):
        step_config = step.get("config") or {}
        if step.get("registry_name") == "tokenizer_processor" and step_config.get("tokenizer_name") not in (None,
                                                                                                             name):
            step_config["tokenizer_name"] = name
            changed = True
    if changed:
        _write_json(folder / PREPROCESSOR_FILE, pipeline)


def locate_vlm(config: dict[str, Any], override: str | Path | None, where: Path) -> tuple[Path, str]:
    """(local VLM folder, how it was found) for the checkpoint ``where``: ``override``, else the checkpoint's
    ``vlm/``, else the recorded local folder (older checkpoints), else the recorded hub id in the local Hugging
    Face cache; never downloads. Raises :class:`CheckpointError` when none has it."""
    if override:
        candidate = Path(override).expanduser()
        if not _is_vlm_folder(candidate):
            raise CheckpointError(f"VLM folder {candidate} (vlm_path override) does not exist or has no {CONFIG_FILE}")
        return candidate.resolve(), "override"
    if _is_vlm_folder(where / VLM_FOLDER):
        return (where / VLM_FOLDER).resolve(), "shipped"
    recorded = str(config.get("vlm_model_name", ""))
    if recorded and _is_vlm_folder(Path(recorded).expanduser()):
        return Path(recorded).expanduser().resolve(), "recorded path"
    if looks_like_hub_id(recorded):
        cached = cached_vlm(recorded)
        if cached is not None and _is_vlm_folder(cached):
            return cached, "Hugging Face cache"
        if recorded.startswith(SHIPPED_VLM_PREFIX):
            how = (f"not shipped in {VLM_FOLDER}/ nor in the Hugging Face cache {hub_cache_dir()}); copy the "
                   f"checkpoint's whole folder, {VLM_FOLDER}/ included, or")
        else:
            how = (f"not shipped in {VLM_FOLDER}/ nor in the Hugging Face cache {hub_cache_dir()}); fetch it once "
                   f"with `hf download {recorded}` (then run offline), or")
    else:
        how = (f"not shipped in {VLM_FOLDER}/, and that folder is gone); fix the checkpoint once with "
               f"`kuavo-smolvla-inspect {where} --vlm-path DIR --make-portable`, or")
    raise CheckpointError(
        f"{where / CONFIG_FILE}: VLM folder {recorded!r} cannot be found locally ({how} pass vlm_path pointing at "
        "a local copy of the VLM (config, processor and tokenizer files)")


def resolve_vlm_path(config: dict[str, Any], override: str | Path | None, where: Path) -> Path:
    """The local VLM folder (:func:`locate_vlm`)."""
    return locate_vlm(config, override, where)[0]


def _vlm_notes(folder: Path, recorded: str, vlm_path: Path, source: str) -> list[str]:
    if source in ("recorded path", "shipped") and not looks_like_hub_id(recorded):
        return [f"config.json records the VLM by a path of the machine that wrote it: before moving the checkpoint "
                f"run `kuavo-smolvla-inspect {folder} --make-portable`"]
    if source == "shipped" and recorded.startswith(SHIPPED_VLM_PREFIX) and cached_vlm(recorded) is None:
        return [f"{recorded} is shipped in {VLM_FOLDER}/ but not in this machine's Hugging Face cache: for "
                f"lerobot's own loader run `kuavo-smolvla-inspect {folder} --make-portable` once"]
    return []


# ------------------------------------------------------------------------------------- action mode
UPGRADE_COMMAND = "kuavo-smolvla-inspect {folder} --upgrade-relative"


def checkpoint_action_mode(folder: Path, pipelines: dict[str, dict[str, Any]] | None = None,
                           metadata: CheckpointMetadata | None = None) -> str:
    """How ``folder``'s processors convert actions ("absolute" or "relative", see
    :func:`~kuavo_smolvla_ros.policy.processors.pipeline_action_mode`), checked against the provenance in
    ``kuavo_smolvla.json``. Raises :class:`CheckpointError` when they disagree; for a checkpoint written
    before relative actions were lerobot processor steps (``action_mode: relative``, no steps), with the
    command that converts it."""
    folder = resolve_checkpoint_dir(folder)
    if pipelines is None:
        pipelines = {name: _read_json(folder / name) for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE)}
    if metadata is None:
        metadata = CheckpointMetadata.load(folder)
    mode = pipeline_action_mode(folder, pipelines[PREPROCESSOR_FILE], pipelines[POSTPROCESSOR_FILE])
    if metadata is None or metadata.action_mode == mode:
        return mode
    if metadata.action_mode == "relative":
        raise CheckpointError(
            f"{folder / METADATA_FILE}: action_mode 'relative', but {folder / PREPROCESSOR_FILE} has no "
            f"{RELATIVE_STEP} step: written before relative actions were lerobot processor steps (lerobot's "
            f"loader would return action - state); convert it with: {UPGRADE_COMMAND.format(folder=folder)}")
    if "action_mode" not in _read_json(folder / METADATA_FILE):  # the dataclass default, not the file's
        raise CheckpointError(
            f"{folder / METADATA_FILE} records no action_mode, but the processors convert actions as {mode!r} "
            f"({PREPROCESSOR_FILE}, {POSTPROCESSOR_FILE}): add \"action_mode\": \"{mode}\" to {METADATA_FILE}")
    raise CheckpointError(f"{folder / METADATA_FILE}: action_mode {metadata.action_mode!r}, but the processors "
                          f"convert actions as {mode!r} ({PREPROCESSOR_FILE}, {POSTPROCESSOR_FILE}): set "
                          f"\"action_mode\": \"{mode}\" there if the processors are right")


def upgrade_relative(folder: str | Path) -> bool:
    """Give a relative checkpoint written before relative actions were lerobot processor steps those steps:
    ``RelativeActionsProcessorStep`` before the normaliser, ``AbsoluteActionsProcessorStep`` after the
    unnormaliser (both JSON files rewritten, each whole or not at all; statistics unchanged, predictions
    unchanged). Returns False when it already has them. Raises :class:`CheckpointError` when its
    ``kuavo_smolvla.json`` does not say ``action_mode: relative``."""
    folder = resolve_checkpoint_dir(folder)
    pipelines = {name: _check_processor(folder, name) for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE)}
    metadata = CheckpointMetadata.load(folder)
    if pipeline_action_mode(folder, pipelines[PREPROCESSOR_FILE], pipelines[POSTPROCESSOR_FILE]) == "relative":
        return False
    if metadata is None or metadata.action_mode != "relative":
        raise CheckpointError(f"{folder}: not a relative-action checkpoint ({METADATA_FILE} does not say "
                              "action_mode 'relative'); nothing to upgrade")
    pre, post = with_relative_steps(pipelines[PREPROCESSOR_FILE], pipelines[POSTPROCESSOR_FILE], metadata.joint_names)
    _write_json(folder / PREPROCESSOR_FILE, pre)
    _write_json(folder / POSTPROCESSOR_FILE, post)
    return True


# ------------------------------------------------------------------------------------------- inspect
def inspect_checkpoint(path: str | Path, vlm_path: str | Path | None = None, kuavo_layout: bool = True
                       ) -> CheckpointInfo:
    """Check a checkpoint folder without loading its weights; raise :class:`CheckpointError` on a problem.

    ``kuavo_layout=False`` accepts other robots' features and skips the normaliser statistics (a pretrained
    base such as lerobot/smolvla_base, whose features and statistics training replaces by the datasets')."""
    folder = resolve_checkpoint_dir(path)
    config = _read_json(folder / CONFIG_FILE)
    policy_type = config.get("type")
    if policy_type != "smolvla":
        raise CheckpointError(f"{folder / CONFIG_FILE}: policy type is {policy_type!r}, expected 'smolvla'")
    _check_config_fields(folder, config)
    shapes = weight_shapes(folder / WEIGHTS_FILE)
    _check_prefix(folder, frozenset(shapes))
    pipelines = {name: _check_processor(folder, name) for name in (PREPROCESSOR_FILE, POSTPROCESSOR_FILE)}

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
    for name, pipeline in pipelines.items():
        _check_processor_steps(folder, name, pipeline)
        if kuavo_layout:
            _check_statistics(folder, name, pipeline, config)

    metadata = CheckpointMetadata.load(folder)
    action_mode = checkpoint_action_mode(folder, pipelines, metadata)
    vlm, source = locate_vlm(config, vlm_path, folder)
    policy_config = read_policy_config(folder)
    check_tensors(folder / WEIGHTS_FILE, shapes, _expected_tensors(policy_config, vlm))
    recorded = str(config.get("vlm_model_name", ""))
    return CheckpointInfo(
        path=folder,
        config=config,
        vlm_path=vlm,
        cameras=list(image_shapes),
        image_shapes=image_shapes,
        metadata=metadata,
        weight_names=frozenset(shapes),
        vlm_name=recorded,
        vlm_source=source,
        vlm_hub_id=recorded if looks_like_hub_id(recorded) else hub_id_of_cache_folder(vlm),
        policy_config=policy_config,
        notes=_vlm_notes(folder, recorded, vlm, source),
        action_mode=action_mode,
    )


INSPECT_EXIT_CODES = """exit status:
  0  the checkpoint opens (what it holds is printed; "note:" lines are advice, not refusals)
  1  the checkpoint is refused: one "error:" line names the file and the cause (the node refuses it too)
  2  bad arguments: no folder at the checkpoint path or at --vlm-path, --vlm-hub-id without --make-portable
  130  interrupted (Ctrl-C): one "interrupted" line (the changing options write each file whole or not at all)
"""


def _argument_error(args: argparse.Namespace) -> str | None:
    """What is wrong with ``kuavo-smolvla-inspect``'s arguments themselves (before the checkpoint is read)."""
    if not args.checkpoint.exists():  # (as kuavo-sim-eval and policy_node: a path that is not there is refused)
        return f"no checkpoint at {args.checkpoint} (no such file or folder)"
    if not args.checkpoint.is_dir():
        return f"{args.checkpoint} is a file: a checkpoint is a folder (config.json, model.safetensors, processors)"
    if args.vlm_path is not None and not args.vlm_path.is_dir():
        what = "a file, not a folder" if args.vlm_path.exists() else "no such folder"
        return f"--vlm-path {args.vlm_path}: {what} (a local SmolVLM2 folder)"
    if args.vlm_hub_id and not args.make_portable:
        return "--vlm-hub-id is used by --make-portable only: add --make-portable"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check a SmolVLA checkpoint for the Kuavo node: the node opens it exactly when this does.",
        epilog=INSPECT_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--vlm-path", type=Path, default=None, help="override the recorded VLM folder")
    parser.add_argument("--make-portable", action="store_true",
                        help="first record the VLM by a portable name: ship a small VLM folder in vlm/ and put it in "
                             "the local Hugging Face cache (lerobot's own loader finds it there)")
    parser.add_argument("--vlm-hub-id", default=None,
                        help="with --make-portable: the hub id of a VLM with weights given by --vlm-path")
    parser.add_argument("--strip-prefix", default=None, metavar="PREFIX",
                        help="first remove PREFIX (e.g. _orig_mod.) from every tensor name in model.safetensors")
    parser.add_argument("--upgrade-relative", action="store_true",
                        help="first give a relative-action checkpoint written before relative actions were lerobot "
                             "processor steps those steps (its predictions do not change; lerobot's loader then "
                             "returns absolute actions too)")
    args = parser.parse_args(argv)
    refused = _argument_error(args)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    try:
        if args.upgrade_relative:
            done = upgrade_relative(args.checkpoint)
            print("added lerobot's relative/absolute action steps to the processors" if done
                  else "the processors already have lerobot's relative/absolute action steps")
        if args.strip_prefix:
            count = strip_prefix(args.checkpoint, args.strip_prefix)
            print(f"stripped {args.strip_prefix!r} from {count} tensor names")
        if args.make_portable:
            folder = resolve_checkpoint_dir(args.checkpoint)
            config = _read_json(folder / CONFIG_FILE)
            vlm, _ = locate_vlm(config, args.vlm_path, folder)
            recorded = str(config.get("vlm_model_name", ""))
            name = make_portable(folder, vlm, args.vlm_hub_id or (recorded if looks_like_hub_id(recorded) else None))
            print(f"recorded the VLM as {name}")
        info = inspect_checkpoint(args.checkpoint, args.vlm_path)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"checkpoint   {info.path}")
    print(f"vlm          {info.vlm_path} ({info.vlm_name}; {info.vlm_source})")
    print(f"cameras      {', '.join(f'{c} {info.image_shapes[c]}' for c in info.cameras)}")
    print(f"chunk_size   {info.chunk_size}  n_action_steps {info.n_action_steps}  num_steps {info.num_steps}")
    how = " (lerobot's relative/absolute action processor steps)" if info.action_mode == "relative" else ""
    print(f"action_mode  {info.action_mode}{how}  tensors {len(info.weight_names)}")
    if info.metadata and info.metadata.origin:
        print(f"origin       {info.metadata.origin}")
    for note in info.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
