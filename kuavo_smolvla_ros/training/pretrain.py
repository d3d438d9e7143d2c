"""Pretrain the project's tiny base policy on the simulator's primitives: our stand-in for ``lerobot/smolvla_base``.

The real recipe fine-tunes ``lerobot/smolvla_base`` with its vision encoder and VLM frozen: it relies on a base
whose whole VLM path (vision tower, connector, language layers) already turns camera images into features
that say where things are. A randomly initialised tiny SmolVLA has no such path (frozen random layers wash
the image out: ``shared/reference/tiny-smolvla-learning.md``), so the demo and the closed-loop benchmark
need a base of their own before they can run the real recipe. :func:`pretrain` makes it:

1. episodes of the primitives of ``config/primitives.yaml`` (touch, pull closer, put further out, with either
   hand; the block anywhere on the table), run by the scripted expert and sampled as a converted dataset
   holds them (``sim/primitives.py``: 10 fps, three JPEG-round-tripped 64x64 cameras, state, command);
   none of the four factory tasks;
2. a tiny random SmolVLA (``policy/tiny.py``; its tokenizer learns the factory tasks' and the primitives'
   texts) trained with *everything* trainable on them, relative actions as lerobot's processor steps,
   AdamW with warmup and cosine decay (``training/common``), flow noise keyed by the step;
3. a linear probe of the frozen vision features (the head camera's tokens after the vision tower and
   connector, as ``freeze_vision_encoder`` leaves them): ridge regression from the features to the block's
   table position on training frames, its error in cm on held-out episodes, for the pretrained weights and
   for the random weights it started from;
4. a lerobot checkpoint (``policy/checkpoint.py`` format, self-contained) plus ``pretraining.json`` (what it
   saw, for how long, losses, the probe).

Settings: ``training/configs/pretrain_tiny_base.yaml`` (``python training/pretrain_base.py``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuavo_smolvla_ros import features
from kuavo_smolvla_ros.atomic import folder_problem, write_json
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.policy.checkpoint import CheckpointMetadata, inspect_checkpoint
from kuavo_smolvla_ros.policy.processors import make_processors, relative_action_stats
from kuavo_smolvla_ros.policy.runtime import load_policy
from kuavo_smolvla_ros.policy.tiny import TinyCheckpointSpec, build_checkpoint
from kuavo_smolvla_ros.sim.primitives import EpisodeFrames, episode_frames, primitive_catalog
from kuavo_smolvla_ros.tasks import Task, default_catalog
from kuavo_smolvla_ros.training.common.augment import camera_dropout_setting, drop_cameras
from kuavo_smolvla_ros.training.common.config import OptimConfig, number_setting, optim_config, seed_setting
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.common.loop import duration, tensorboard_writer
from kuavo_smolvla_ros.training.common.optim import Optimisation
from kuavo_smolvla_ros.training.distributed import flow_noise
from kuavo_smolvla_ros.training.memory import MemoryDataset

LOG = logging.getLogger(__name__)
REPORT_FILE = "pretraining.json"
#: The camera whose features the probe reads (it sees the whole table).
PROBE_CAMERA = "head_cam_h"


@dataclass(frozen=True)
class PretrainSettings:
    """``pretrain_tiny_base.yaml`` as values (see that file for each one's meaning)."""

    output: Path
    episodes: int = 40
    validation_episodes: int = 6
    image_size: tuple[int, int] = (64, 64)
    cameras: tuple[str, ...] = ("head_cam_h", "wrist_cam_l", "wrist_cam_r")
    fps: int = 10
    tail_s: float = 2.5
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    seed: int = 0
    tokenizer_max_length: int = 24
    chunk_size: int = 50
    n_action_steps: int = 8
    num_steps: int = 10
    action_mode: str = "relative"
    log_every_steps: int = 250
    probe_ridge: float = 1e-2
    #: CPU threads of the training's arithmetic: the sums split by thread, so one count gives one base, bit for
    #: bit, on every run on a machine (the shipped ``assets/pretrained_base`` was built with 2)
    torch_threads: int = 2
    #: camera -> probability that a training sample shows it black (a camera dropped); see :func:`drop_cameras`
    camera_dropout: Mapping[str, float] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PretrainSettings:
        """From the Hydra config (a plain dict); :class:`TrainingConfigError` names a bad key and value."""
        fields = cls.__dataclass_fields__
        known = ({f for f in fields if f != "optim"} | {"optimizer", "scheduler"})
        unknown = sorted(set(cfg) - known - {"hydra"})
        if unknown:
            raise TrainingConfigError(f"unknown setting(s) {unknown} (known: {sorted(known)})")
        values: dict[str, Any] = {"optim": optim_config(cfg)}
        for name in ("episodes", "validation_episodes", "fps", "steps", "batch_size", "chunk_size",
                     "n_action_steps", "num_steps", "tokenizer_max_length", "log_every_steps", "torch_threads"):
            values[name] = number_setting(cfg, name, int, default=fields[name].default)
        for name in ("tail_s", "lr", "probe_ridge"):
            values[name] = number_setting(cfg, name, float, default=fields[name].default)
        values["warmup_steps"] = number_setting(cfg, "warmup_steps", int, allow_zero=True, default=100)
        values["seed"] = seed_setting(cfg, "seed", default=0)
        if cfg.get("output") in (None, "", "???"):
            raise TrainingConfigError("output: where to write the base checkpoint, e.g. output=outputs/base")
        values["output"] = Path(str(cfg["output"]))
        problem = folder_problem(values["output"])
        if problem:
            raise TrainingConfigError(f"output={values['output']}: {problem}: choose a folder for the base")
        if values["output"].exists() and not (values["output"] / REPORT_FILE).is_file():
            raise TrainingConfigError(f"output={values['output']} exists and is not a base this command wrote (no "
                                      f"{REPORT_FILE}); it would be replaced: choose a new folder")
        if cfg.get("image_size") is not None:
            size = cfg["image_size"]
            if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(isinstance(v, int) and v > 0
                                                                                  for v in size):
                raise TrainingConfigError(f"image_size: expected [height, width] in pixels, got {size!r}")
            values["image_size"] = tuple(size)
        if cfg.get("cameras") is not None:
            from kuavo_smolvla_ros.sim.render import CAMERA_VIEWS

            values["cameras"] = tuple(str(c) for c in cfg["cameras"])
            unknown = [c for c in values["cameras"] if c not in CAMERA_VIEWS]
            if unknown or not values["cameras"]:
                raise TrainingConfigError(f"cameras: the simulator renders {sorted(CAMERA_VIEWS)}, got "
                                          f"{unknown or '[]'}")
        values["camera_dropout"] = camera_dropout_setting(cfg.get("camera_dropout"),
                                                          values.get("cameras", fields["cameras"].default))
        mode = cfg.get("action_mode") or "relative"
        if mode not in ("absolute", "relative"):
            raise TrainingConfigError(f"action_mode: expected absolute or relative, got {mode!r}")
        values["action_mode"] = mode
        settings = cls(**values)
        if settings.episodes <= settings.validation_episodes:
            raise TrainingConfigError(f"episodes ({settings.episodes}) must be more than validation_episodes "
                                      f"({settings.validation_episodes}): raise episodes or lower validation_episodes")
        if settings.warmup_steps >= settings.steps:
            raise TrainingConfigError(f"warmup_steps ({settings.warmup_steps}) must be fewer than steps "
                                      f"({settings.steps})")
        return settings


# ------------------------------------------------------------------------------------------ data
def generate(settings: PretrainSettings, tasks: Sequence[Task], first_seed: int = 0) -> list[EpisodeFrames]:
    """``settings.episodes`` expert episodes of every primitive in ``tasks`` (object seeds ``first_seed``...)."""
    from tqdm import tqdm

    cameras = {name: settings.image_size for name in settings.cameras}
    jobs = [(task, first_seed + i) for task in tasks for i in range(settings.episodes)]
    episodes = []
    for task, seed in tqdm(jobs, desc="primitive episodes", unit="ep", leave=False, disable=None):
        episode = episode_frames(task, seed, cameras, fps=settings.fps, tail_s=settings.tail_s)
        if not episode.success:
            raise RuntimeError(f"the expert failed {task.name} (seed {seed})")
        episodes.append(episode)
    return episodes


def as_dataset(episodes: Sequence[EpisodeFrames], chunk_size: int) -> MemoryDataset:
    """Training items as lerobot's dataset gives them (what the trainer's batches hold): camera images
    (3, H, W) uint8 (served as float32 / 255), ``observation.state`` (16,), ``action`` (chunk_size, 16) with
    ``action_is_pad`` past the episode's end (the last action repeated, as lerobot pads), ``task``."""
    tensors: dict[str, list[torch.Tensor]] = {}
    codes: list[int] = []
    texts: list[str] = []
    for episode in episodes:
        length = len(episode.state)
        for name, frames in episode.images.items():
            tensors.setdefault(image_key(name), []).append(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous())
        tensors.setdefault(features.OBS_STATE, []).append(torch.from_numpy(episode.state))
        index = np.minimum(np.arange(length)[:, None] + np.arange(chunk_size)[None, :], length - 1)
        tensors.setdefault(features.ACTION, []).append(torch.from_numpy(episode.action[index]))
        pad = (np.arange(length)[:, None] + np.arange(chunk_size)[None, :]) >= length
        tensors.setdefault("action_is_pad", []).append(torch.from_numpy(pad))
        if episode.task.instruction not in texts:
            texts.append(episode.task.instruction)
        codes += [texts.index(episode.task.instruction)] * length
    stacked = {key: torch.cat(parts) for key, parts in tensors.items()}
    images = [key for key in stacked if key.startswith(features.OBS_IMAGES)]
    return MemoryDataset(len(codes), [*stacked, "task"], stacked, images,
                         {"task": (texts, torch.tensor(codes, dtype=torch.int64))})


def statistics(episodes: Sequence[EpisodeFrames], chunk_size: int, action_mode: str) -> dict[str, dict[str, Any]]:
    """Normalisation statistics: mean/std of the state, and of the actions (lerobot's relative action
    statistics when ``action_mode`` is relative)."""
    states = np.concatenate([e.state for e in episodes])
    stats: dict[str, dict[str, Any]] = {features.OBS_STATE: {"mean": states.mean(0), "std": states.std(0) + 1e-3}}
    if action_mode == "relative":
        relative = relative_action_stats([(e.state, e.action) for e in episodes], chunk_size)
        stats[features.ACTION] = {"mean": relative["mean"], "std": relative["std"] + 1e-3}
    else:
        actions = np.concatenate([e.action for e in episodes])
        stats[features.ACTION] = {"mean": actions.mean(0), "std": actions.std(0) + 1e-3}
    return {k: {s: np.asarray(v, dtype=np.float32) for s, v in d.items()} for k, d in stats.items()}


# ------------------------------------------------------------------------------------------ probe
@torch.no_grad()
def vision_features(policy, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The frozen vision features of (N, H, W, 3) uint8 frames: SmolVLA's image tokens after the vision tower
    and connector (``embed_image`` on the image prepared as ``prepare_images`` does: padded to the VLM's
    size, scaled to [-1, 1]), flattened to (N, tokens * hidden)."""
    from lerobot.policies.smolvla.modeling_smolvla import resize_with_pad

    policy.eval()
    out = []
    size = policy.config.resize_imgs_with_padding
    for start in range(0, len(images), batch):
        image = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float() / 255
        if size is not None:
            image = resize_with_pad(image, *size, pad_value=0)
        tokens = policy.model.vlm_with_expert.embed_image(image * 2.0 - 1.0)
        out.append(tokens.reshape(len(image), -1).float().numpy())
    return np.concatenate(out)


@torch.no_grad()
def vlm_features(policy, preprocessor, dataset: MemoryDataset, batch: int = 128) -> np.ndarray:
    """What the action expert attends to: the VLM's last-layer outputs at every camera's image tokens (all
    cameras, after the language layers, with the frame's instruction and state in the prefix, as
    ``sample_actions`` builds it), flattened to (N, image tokens * hidden)."""
    from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks
    from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

    policy.eval()
    model = policy.model
    out = []
    for start in range(0, len(dataset), batch):
        items = preprocessor(dataset[list(range(start, min(start + batch, len(dataset))))])
        images, image_masks = policy.prepare_images(items)
        tokens, masks = items[OBS_LANGUAGE_TOKENS], items[OBS_LANGUAGE_ATTENTION_MASK]
        embeddings, pad_masks, att_masks = model.embed_prefix(images, image_masks, tokens, masks,
                                                              state=policy.prepare_state(items))
        (prefix, _), _ = model.vlm_with_expert.forward(
            attention_mask=make_att_2d_masks(pad_masks, att_masks), position_ids=torch.cumsum(pad_masks, dim=1) - 1,
            past_key_values=None, inputs_embeds=[embeddings, None], use_cache=True)
        image_tokens = embeddings.shape[1] - tokens.shape[1] - 1  # the prefix: images, instruction, state
        out.append(prefix[:, :image_tokens].reshape(len(prefix), -1).float().numpy())
    return np.concatenate(out)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 ridge: float = 1e-2) -> dict[str, float]:
    """Ridge regression from features to table xy (m), fitted on the training frames (standardised features,
    ``ridge`` times the number of frames as the penalty); the held-out frames' mean and 90th-percentile
    position error in cm, beside predicting the training mean."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a = np.hstack([(train_x - mean) / std, np.ones((len(train_x), 1))])
    b = np.hstack([(test_x - mean) / std, np.ones((len(test_x), 1))])
    weights = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ train_y)
    error = np.linalg.norm(b @ weights - test_y, axis=1) * 100
    baseline = np.linalg.norm(train_y.mean(0) - test_y, axis=1) * 100
    return {"error_cm_mean": float(error.mean()), "error_cm_p90": float(np.percentile(error, 90)),
            "mean_prediction_error_cm": float(baseline.mean()), "frames_train": len(a), "frames_held_out": len(b)}


def probe(policy, preprocessor, train: Sequence[EpisodeFrames], held_out: Sequence[EpisodeFrames], chunk_size: int,
          ridge: float) -> dict[str, dict[str, float]]:
    """:func:`linear_probe` for the block's position from ``policy``'s frozen features: ``vision`` (the head
    camera's tokens after the vision tower and connector: what ``freeze_vision_encoder`` fixes) and ``vlm``
    (every camera's image tokens after the language layers: what the action expert reads when
    ``train_expert_only`` freezes the VLM)."""
    def frames(episodes):
        return (np.concatenate([e.images[PROBE_CAMERA] for e in episodes]),
                np.concatenate([e.object_xy for e in episodes]).astype(np.float64))

    (train_images, train_xy), (test_images, test_xy) = frames(train), frames(held_out)
    vision = linear_probe(vision_features(policy, train_images), train_xy, vision_features(policy, test_images),
                          test_xy, ridge)
    vlm = linear_probe(vlm_features(policy, preprocessor, as_dataset(train, chunk_size)), train_xy,
                       vlm_features(policy, preprocessor, as_dataset(held_out, chunk_size)), test_xy, ridge)
    return {"vision": vision, "vlm": vlm}


# ------------------------------------------------------------------------------------------ the base's record
def check_config(cfg: Mapping[str, Any], configs_dir: Path | None = None) -> PretrainSettings:
    """``training/pretrain_base.py``'s check before Hydra creates anything: the settings of ``cfg``
    (:meth:`PretrainSettings.from_config`; :class:`TrainingConfigError` names a bad key and value)."""
    return PretrainSettings.from_config(cfg)


def settings_record(settings: PretrainSettings) -> dict[str, Any]:
    """Every setting that shapes the base (all but ``output`` and ``log_every_steps``), JSON-ready: what
    ``pretraining.json`` keeps under ``settings`` and :func:`stale_base` compares."""
    from dataclasses import asdict

    record = asdict(settings)
    for key in ("output", "log_every_steps"):  # where it goes and how often it logs: not the base
        record.pop(key)
    return json.loads(json.dumps(record, default=str))


def config_settings(config_file: Path, output: Path, overrides: Mapping[str, Any] | None = None) -> PretrainSettings:
    """The settings ``python training/pretrain_base.py output=OUTPUT [key=value ...]`` would use (``config_file``'s
    values, Hydra's own section and defaults list left out, top-level ``overrides`` on top)."""
    import yaml

    cfg = yaml.safe_load(Path(config_file).read_text()) or {}
    cfg.pop("hydra", None)
    cfg.pop("defaults", None)
    return PretrainSettings.from_config(cfg | dict(overrides or {}) | {"output": str(output)})


def stale_base(folder: Path, settings: PretrainSettings) -> str | None:
    """Why the base in ``folder`` is not what ``settings`` would build (no report, or the settings that differ,
    ``before -> now``), or None when it is."""
    report_file = Path(folder) / REPORT_FILE
    if not report_file.is_file() or not (Path(folder) / "model.safetensors").is_file():
        return f"no base in {folder}"
    before = json.loads(report_file.read_text()).get("settings")
    if before is None:
        return f"{report_file} predates settings records"
    now = settings_record(settings)
    changed = [f"{key} {before.get(key)!r} -> {now[key]!r}" for key in now if before.get(key) != now[key]]
    return f"built with other settings ({', '.join(changed)})" if changed else None


# ------------------------------------------------------------------------------------------ training
def _batch(dataset: MemoryDataset, rng: np.random.Generator, size: int) -> dict[str, Any]:
    return dataset[rng.integers(0, len(dataset), size).tolist()]


@torch.no_grad()
def validation_loss(policy, preprocessor, dataset: MemoryDataset, batch_size: int, seed: int = 0,
                    max_batches: int = 8) -> float:
    """Mean flow-matching loss on ``dataset`` with fixed noise and flow times (comparable between calls)."""
    policy.eval()
    config = policy.config
    total, count = 0.0, 0
    for index, start in enumerate(range(0, len(dataset), batch_size)):
        if index >= max_batches:
            break
        batch = dataset[list(range(start, min(start + batch_size, len(dataset))))]
        size = len(batch[features.ACTION])
        noise, flow_time = flow_noise(index, seed, size, size, config.chunk_size, config.max_action_dim)
        loss, _ = policy(preprocessor(batch), noise=noise, time=flow_time)
        total, count = total + float(loss) * size, count + size
    return total / max(count, 1)


def pretrain(settings: PretrainSettings) -> dict[str, Any]:
    """Generate the primitives' episodes, train the tiny base on them, probe it and write the checkpoint to
    ``settings.output``; returns the report (also ``pretraining.json`` there). Torch runs on
    ``settings.torch_threads`` CPU threads meanwhile (the caller's count restored after), so the same settings
    and code build the same base, bit for bit, on one machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        return _pretrain(settings)
    finally:
        torch.set_num_threads(threads)


def _pretrain(settings: PretrainSettings) -> dict[str, Any]:
    from tqdm import tqdm

    from kuavo_smolvla_ros.training.common.checkpoints import write_checkpoint

    started = time.perf_counter()
    output = Path(settings.output)
    tasks = list(primitive_catalog())
    overlap = {t.instruction for t in tasks} & set(default_catalog().instructions)
    if overlap:
        raise TrainingConfigError(f"primitives.yaml repeats a factory task's instruction: {sorted(overlap)}")
    episodes = generate(settings, tasks)
    per_task = settings.episodes
    held = [e for i, e in enumerate(episodes) if i % per_task >= per_task - settings.validation_episodes]
    train = [e for i, e in enumerate(episodes) if i % per_task < per_task - settings.validation_episodes]
    generated_s = time.perf_counter() - started
    LOG.info("pretraining data: %d episodes (%d frames) of %d primitives in %.0f s", len(episodes),
             sum(len(e.state) for e in episodes), len(tasks), generated_s)

    stats = statistics(train, settings.chunk_size, settings.action_mode)
    init = output.parent / f".{output.name}.init"
    build_checkpoint(init, TinyCheckpointSpec(
        cameras=settings.cameras, image_shape=settings.image_size, chunk_size=settings.chunk_size,
        n_action_steps=settings.n_action_steps, num_steps=settings.num_steps,
        tokenizer_max_length=settings.tokenizer_max_length, seed=settings.seed,
        stats={k: {s: v.tolist() for s, v in d.items()} for k, d in stats.items()},
        action_mode=settings.action_mode, train_everything=True, extra_texts=[t.instruction for t in tasks]))
    info = inspect_checkpoint(init, kuavo_layout=False)
    policy = load_policy(info)
    torch_stats = {k: {s: torch.as_tensor(v) for s, v in d.items()} for k, d in stats.items()}
    preprocessor, postprocessor = make_processors(policy.config, torch_stats, settings.action_mode)
    random_probe = probe(policy, preprocessor, train, held, settings.chunk_size, settings.probe_ridge)

    train_set, held_set = as_dataset(train, settings.chunk_size), as_dataset(held, settings.chunk_size)
    optim = Optimisation(policy, settings.optim, settings.lr, settings.warmup_steps,
                         max(settings.steps - settings.warmup_steps, 1))
    writer = tensorboard_writer(output.parent / f"{output.name}_tensorboard", True)
    rng = np.random.default_rng(settings.seed)
    history, losses = [], []
    config = policy.config
    train_started = time.perf_counter()
    policy.train()
    for step in tqdm(range(settings.steps), desc="pretraining", unit="step", leave=False, disable=None):
        batch = drop_cameras(_batch(train_set, rng, settings.batch_size), settings.camera_dropout, rng)
        noise, flow_time = flow_noise(step, settings.seed, settings.batch_size, settings.batch_size,
                                      config.chunk_size, config.max_action_dim)
        loss, _ = policy(preprocessor(batch), noise=noise, time=flow_time)
        losses.append(optim.step(loss, step, writer, output, where=" (pretraining)"))
        if (step + 1) % settings.log_every_steps == 0 or step + 1 == settings.steps:
            held_loss = validation_loss(policy, preprocessor, held_set, settings.batch_size)
            policy.train()
            elapsed = time.perf_counter() - train_started
            left = elapsed / (step + 1) * (settings.steps - step - 1)
            history.append({"step": step + 1, "train_loss": float(np.mean(losses[-settings.log_every_steps:])),
                            "validation_loss": held_loss, "lr": optim.lr})
            writer.add_scalar("validation/primitives_loss", held_loss, step + 1)
            LOG.info("pretraining step %d/%d: train loss %.4f, held-out loss %.4f, lr %.2e; %s elapsed, about %s left",
                     step + 1, settings.steps, history[-1]["train_loss"], held_loss, optim.lr, duration(elapsed),
                     duration(left))
    writer.flush()
    train_s = time.perf_counter() - train_started
    pretrained_probe = probe(policy, preprocessor, train, held, settings.chunk_size, settings.probe_ridge)

    metadata = CheckpointMetadata(
        action_mode=settings.action_mode, cameras=list(settings.cameras),
        instructions=[t.instruction for t in tasks],
        normalization="mean/std of state and of lerobot's relative action statistics over the primitives' "
                      "training episodes",
        origin="kuavo_smolvla_ros.training.pretrain: tiny base pretrained on config/primitives.yaml",
        extra={"pretraining": REPORT_FILE})
    write_checkpoint(output, policy, preprocessor, postprocessor, metadata)
    shutil.rmtree(init, ignore_errors=True)
    report = {
        "checkpoint": str(output),
        "primitives": [t.name for t in tasks],
        "episodes_per_primitive": settings.episodes, "held_out_per_primitive": settings.validation_episodes,
        "frames_train": len(train_set), "frames_held_out": len(held_set), "fps": settings.fps,
        "cameras": list(settings.cameras), "image_size": list(settings.image_size),
        "camera_dropout": dict(settings.camera_dropout), "settings": settings_record(settings),
        "steps": settings.steps, "batch_size": settings.batch_size, "lr": settings.lr,
        "samples_seen": settings.steps * settings.batch_size,
        "epochs_equivalent": settings.steps * settings.batch_size / max(len(train_set), 1),
        "trainable_parameters": sum(p.numel() for p in policy.parameters() if p.requires_grad),
        "seconds": {"data": generated_s, "training": train_s, "total": time.perf_counter() - started},
        "history": history,
        "probe": {"what": "ridge regression from frozen features to the block's table position, error on the "
                          f"held-out episodes' frames: vision = {PROBE_CAMERA}'s tokens after the vision tower and "
                          "connector; vlm = every camera's image tokens after the language layers",
                  "random_init": random_probe, "pretrained": pretrained_probe},
    }
    write_json(output / REPORT_FILE, report)
    for name in ("vision", "vlm"):
        LOG.info("probe of the frozen %s features (block position, held-out frames): %.1f cm pretrained, %.1f cm "
                 "random weights, %.1f cm predicting the mean", name, pretrained_probe[name]["error_cm_mean"],
                 random_probe[name]["error_cm_mean"], pretrained_probe[name]["mean_prediction_error_cm"])
    LOG.info("wrote the pretrained base to %s (%.1f min in all)", output, report["seconds"]["total"] / 60)
    return report
