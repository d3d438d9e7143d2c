"""One stage of sequential training (:class:`StageTrainer`): replay batches, AdamW with warmup + cosine decay,
validation on the held-out episodes of every task seen so far with fixed noise, atomic checkpoints and
resumable state. The pieces it shares with reflow (optimizer and schedule, the optimisation step, checkpoint
writing and resuming, autocast, TensorBoard) are in ``training/common/``; its settings in
``training/sequential_config.py``.

Outputs under ``<output_root>/task{k}_{name}/``: ``best/``, ``epoch{N}/``, ``last/`` (lerobot checkpoints
plus ``kuavo_smolvla.json``), ``last/training_state/`` (optimizer, scheduler, RNG as safetensors/JSON, no
pickles), ``training_results.json`` and ``tensorboard/``.

Actions are trained as the init checkpoint's processors convert them (lerobot's relative/absolute action
steps: relative when it has them) unless the config forces a mode: relative targets are ``action[t+k] -
state[t]``, made by lerobot's ``RelativeActionsProcessorStep`` in the preprocessor, normalised by lerobot's
relative action statistics, and saved with the checkpoint (``policy/processors.py``).
``data_cache: memory`` trains from in-memory copies of the datasets (``training/memory.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.atomic import write_json
from kuavo_smolvla_ros.policy.checkpoint import (
    ACTION_MODES,
    CONFIG_FILE,
    CheckpointMetadata,
    checkpoint_action_mode,
    inspect_checkpoint,
    resolve_checkpoint_dir,
)
from kuavo_smolvla_ros.policy.processors import make_processors
from kuavo_smolvla_ros.policy.runtime import load_policy
from kuavo_smolvla_ros.training.common.augment import drop_cameras
from kuavo_smolvla_ros.training.common.checkpoints import start_progress, training_state_dir, write_checkpoint
from kuavo_smolvla_ros.training.common.config import check_data_cache
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.common.loop import autocast, duration, tensorboard_writer
from kuavo_smolvla_ros.training.common.optim import Optimisation
from kuavo_smolvla_ros.training.curriculum import Stage
from kuavo_smolvla_ros.training.datasets import stage_metadata, training_dataset
from kuavo_smolvla_ros.training.distributed import RankSlice, World, flow_noise, sum_over_ranks
from kuavo_smolvla_ros.training.sampling import ReplaySampler, split_episodes
from kuavo_smolvla_ros.training.sequential_config import Settings

LOG = logging.getLogger(__name__)
#: A stage's results (validation history, forgetting report), beside its checkpoints.
RESULTS_FILE = "training_results.json"


def stage_source(stage: Stage, settings: Settings, init_checkpoint: str | Path) -> Path:
    """The checkpoint a stage's trainer loads: its own ``last/`` when resuming, else ``init_checkpoint``."""
    last = Path(settings.output_root) / stage.output_name / "last"
    return last if training_state_dir(last) is not None else Path(init_checkpoint)


def training_action_mode(source: str | Path, forced: str | None = None) -> str:
    """The action mode to train: ``forced``, else the one ``source``'s processors apply (relative with
    lerobot's relative/absolute action steps, else absolute). Raises :class:`CheckpointError` for processors
    that contradict the checkpoint's ``kuavo_smolvla.json`` (an old relative checkpoint: with the command
    that converts it)."""
    mode = forced or checkpoint_action_mode(resolve_checkpoint_dir(source))
    if mode not in ACTION_MODES:
        raise TrainingConfigError(f"action_mode must be one of {ACTION_MODES}, got {mode!r}")
    return mode


def checkpoint_chunk_size(source: str | Path) -> int:
    """``chunk_size`` in a checkpoint's ``config.json``."""
    return int(json.loads((resolve_checkpoint_dir(source) / CONFIG_FILE).read_text())["chunk_size"])


def forgetting_label(loss: float, retained: float, slight: float) -> str:
    """The users' labels by an earlier task's validation loss: below ``retained``, below ``slight``
    (slight degradation), else significant forgetting."""
    if loss < retained:
        return "retained"
    return "slight" if loss < slight else "significant"


class StageTrainer:
    """Trains one stage; ``run()`` returns the stage's results (also written to ``training_results.json``)."""

    def __init__(self, stage: Stage, seen: Sequence[Stage], init_checkpoint: str | Path, stats: dict,
                 settings: Settings, previous_results: dict | None = None, world: World | None = None):
        self.stage, self.seen, self.settings = stage, list(seen), settings
        self.world = world or World()
        self.device = settings.device
        if self.device.startswith("cuda") and self.world.distributed:
            self.device = f"cuda:{self.world.local_rank}"
        self.stats = stats
        self.out = Path(settings.output_root) / stage.output_name
        self.out.mkdir(parents=True, exist_ok=True)
        self.previous = previous_results or {}
        #: TensorBoard steps continue from the previous stage's last (stages follow each other on one axis)
        self.step_offset = int(self.previous.get("global_step_end", 0))
        source = stage_source(stage, settings, init_checkpoint)
        # a fresh stage seeds everything; a resumed one restores its RNG state with the optimizer's
        self.state, resume = start_progress(self.out / "last", {"epoch": 0, "step": 0, "best": None, "history": []},
                                            settings.seed + stage.number)
        self.info = inspect_checkpoint(source, settings.vlm_path, kuavo_layout=False)
        self.action_mode = training_action_mode(source, settings.action_mode)
        check_data_cache(settings.data_cache)
        self.policy = load_policy(self.info, self.device, self._configure)
        self.model = self.policy
        if self.world.distributed:  # gradients averaged over the processes by torch's DDP
            self.model = torch.nn.parallel.DistributedDataParallel(self.policy, find_unused_parameters=True)
        self._make_processors()
        self._make_data()
        self.optim = Optimisation(self.policy, settings.optim, stage.lr, stage.warmup_steps, stage.decay_steps)
        if resume is not None:
            self.optim.load(resume)
            LOG.info("resuming %s at epoch %d, step %d", self.out, self.state["epoch"], self.state["step"])
        self.writer = tensorboard_writer(self.out / "tensorboard", self.world.is_main)

    # ---------------------------------------------------------------------------------- set-up
    def _configure(self, config) -> None:
        """The base config's policy settings, and the datasets' features (a pretrained base was trained on
        another robot: its state/action projections are sized by max_state_dim / max_action_dim, so its
        weights fit any robot's features)."""
        from lerobot.utils.feature_utils import dataset_to_policy_features

        policy_features = dataset_to_policy_features(stage_metadata(self.stage).features)
        config.output_features = {k: v for k, v in policy_features.items() if k == features.ACTION}
        config.input_features = {k: v for k, v in policy_features.items() if k != features.ACTION}
        for key, value in self.settings.policy.items():
            if not hasattr(config, key):
                raise ValueError(f"policy.{key} is not a SmolVLA setting")
            setattr(config, key, value)

    def _make_processors(self) -> None:
        """SmolVLA's processors normalised by the curriculum's statistics, with lerobot's relative/absolute
        action steps when training relative actions."""
        stats = {k: {s: torch.as_tensor(np.asarray(v), dtype=torch.float32) for s, v in d.items()}
                 for k, d in self.stats.items()}
        self.preprocessor, self.postprocessor = make_processors(self.policy.config, stats, self.action_mode)

    @property
    def in_memory(self) -> bool:
        """Whether training reads in-memory copies of the datasets (``data_cache: memory``)."""
        return self.settings.data_cache == "memory"

    def _dataset(self, stage: Stage, episodes: list[int]):
        """The LeRobot dataset of ``episodes`` with action chunks, or (``data_cache: memory``) its cached
        in-memory copy (built from it only when the cache has none)."""
        fps = stage_metadata(stage).fps
        chunk = self.policy.config.chunk_size
        deltas = {features.ACTION: [i / fps for i in range(chunk)]}
        cache_dir = None
        if self.in_memory:
            from kuavo_smolvla_ros.training.memory import CACHE_DIR

            cache_dir = self.settings.data_cache_dir or Path(self.settings.output_root) / CACHE_DIR
        return training_dataset(stage.dataset, episodes, deltas, cache_dir, num_workers=self.settings.num_workers,
                                batch_size=self.settings.batch_size)

    def _loader(self, dataset, batches, num_workers: int):
        """A DataLoader of ``batches`` (lists of indices). In-memory datasets gather a whole batch at once
        (the same tensors default_collate would stack), in this process."""
        from kuavo_smolvla_ros.training.memory import batch_loader

        return batch_loader(dataset, batches, num_workers)

    def _make_data(self) -> None:
        self.train_sets, self.val_sets = [], {}
        for stage in self.seen:
            total = stage_metadata(stage).total_episodes
            train, val = split_episodes(total, stage.validation_episodes, seed=self.settings.seed + stage.task.id)
            if stage.task.name in self.stage.replay:
                self.train_sets.append((stage.task.name, self._dataset(stage, train)))
            if val:
                self.val_sets[stage.task.name] = self._dataset(stage, val)
        weights = [self.stage.replay[name] for name, _ in self.train_sets]
        current = next(len(d) for name, d in self.train_sets if name == self.stage.task.name)
        self.sampler = ReplaySampler([len(d) for _, d in self.train_sets], weights, seed=self.settings.seed,
                                     num_samples=current)
        batches = torch.utils.data.BatchSampler(self.sampler, self.settings.batch_size,
                                                drop_last=self.world.distributed)
        if self.in_memory:
            from kuavo_smolvla_ros.training.memory import MemoryDataset

            data = MemoryDataset.concat([d for _, d in self.train_sets])
        else:
            data = torch.utils.data.ConcatDataset([d for _, d in self.train_sets])
        self.loader = self._loader(data, RankSlice(batches, self.world), self.settings.num_workers)

    # -------------------------------------------------------------------------------- training
    def _loss(self, batch, noise=None, time=None, model=None) -> torch.Tensor:
        with autocast(self.settings.device, self.settings.bf16):
            loss, _ = (model or self.policy)(self.preprocessor(batch), noise=noise, time=time)
        return loss

    def _training_loss(self, batch, noise, time) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to differentiate, global loss to report): lerobot's mean over the unpadded actions of the
        *global* batch. Each process scales its share so that DDP's gradient average equals it exactly."""
        with autocast(self.settings.device, self.settings.bf16):
            per_sample, _ = self.model(self.preprocessor(batch), noise=noise, time=time,
                                       reduction="none")
        pad = batch.get("action_is_pad")
        steps = (~pad).sum(dim=1) if pad is not None else torch.full((len(per_sample),), self.policy.config.chunk_size)
        valid = steps.to(per_sample.device, torch.float32) * robot.ACTION_DIM
        local_sum = (per_sample.float() * valid).sum()
        total = sum_over_ranks(valid.sum(), self.world).clamp_min(1.0)
        return local_sum / total * self.world.size, sum_over_ranks(local_sum.detach(), self.world) / total

    def train_epoch(self, epoch: int) -> float:
        """Train one epoch (0-based ``epoch``: the sampler's draw for it) of the current task's length, with
        replay; returns the mean of the global batches' losses. Raises :class:`TrainingError` on a non-finite
        loss, before the weights change."""
        from tqdm import tqdm

        self.policy.train()
        self.sampler.set_epoch(epoch)
        losses = []
        config = self.policy.config
        for batch in tqdm(self.loader, desc=f"{self.stage.output_name} epoch {epoch + 1}/{self.stage.epochs}",
                          leave=False, disable=None if self.world.is_main else True):
            share = len(batch[features.ACTION])
            if self.settings.camera_dropout:  # drawn per step (and rank): a resumed run drops the same samples
                rng = np.random.default_rng([self.settings.seed, self.stage.number, self.state["step"],
                                             self.world.rank])
                batch = drop_cameras(batch, self.settings.camera_dropout, rng)
            noise, time = flow_noise(self.state["step"], self.settings.seed, share * self.world.size, share,
                                     config.chunk_size, config.max_action_dim, self.world.rank)
            loss, reported = self._training_loss(batch, noise.to(self.device), time.to(self.device))
            losses.append(self.optim.step(loss, self.state["step"], self.writer, self.out / "last", reported,
                                          where=f" (epoch {epoch + 1})", log_offset=self.step_offset))
            self.state["step"] += 1
        return float(np.mean(losses))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean held-out loss per seen task, with the same noise and flow times in every call."""
        self.policy.eval()
        config = self.policy.config
        results = {}
        for name, dataset in self.val_sets.items():
            loader = self._loader(dataset, torch.utils.data.BatchSampler(
                torch.utils.data.SequentialSampler(dataset), self.settings.batch_size, drop_last=False), 0)
            total, count = 0.0, 0
            for index, batch in enumerate(loader):
                if self.settings.max_val_batches is not None and index >= self.settings.max_val_batches:
                    break
                size = len(batch[features.ACTION])
                noise, time = flow_noise(index, self.settings.noise_seed, size, size, config.chunk_size,
                                         config.max_action_dim)
                loss = self._loss(batch, noise.to(self.device), time.to(self.device))
                total += float(loss) * size
                count += size
            results[name] = total / max(count, 1)
        return results

    # ------------------------------------------------------------------------------- saving
    def _metadata(self) -> CheckpointMetadata:
        action = ("relative actions (lerobot's compute_relative_action_stats, chunks of the policy's chunk_size)"
                  if self.action_mode == "relative" else "action")
        return CheckpointMetadata(
            action_mode=self.action_mode, cameras=list(self.info.cameras),
            instructions=[s.task.instruction for s in self.seen], stage=self.stage.number,
            normalization=f"mean/std of state and {action} aggregated over the curriculum's datasets: "
                          + ", ".join(str(s.dataset) for s in self.seen[:1]) + " ... (fixed for all stages)",
            origin=f"kuavo_smolvla_ros.training: stage {self.stage.number} ({self.stage.task.name})",
            extra={"stage_config": self.stage.name, "epoch": self.state["epoch"], "step": self.state["step"]})

    def save_checkpoint(self, name: str, with_state: bool = False) -> Path:
        """Write the policy as the checkpoint ``<stage output>/name`` (with the training state to resume from
        when ``with_state``); returns its folder."""
        return write_checkpoint(self.out / name, self.policy, self.preprocessor, self.postprocessor, self._metadata(),
                                self.optim.state(self.state) if with_state else None, vlm_hub_id=self.info.vlm_hub_id)

    # ----------------------------------------------------------------------------------- run
    def _score(self, validation: dict[str, float]) -> float:
        if self.settings.select_best_by == "mean_seen":
            return float(np.mean(list(validation.values())))
        return validation.get(self.stage.task.name, float("nan"))

    def run(self) -> dict[str, Any]:
        """Train the remaining epochs (validating every ``validate_every_epochs`` and after the last, saving
        ``best/``, ``epoch{N}/`` and ``last/``); returns :meth:`results` on the main process (which also writes
        them), ``{}`` on the others."""
        import time

        started, first = time.monotonic(), self.state["epoch"]
        for epoch in range(self.state["epoch"], self.stage.epochs):
            train_loss = self.train_epoch(epoch)
            if not self.world.is_main:  # the main process validates and writes
                self.state["epoch"] = epoch + 1
                continue
            if (epoch + 1) % self.settings.validate_every_epochs and epoch + 1 != self.stage.epochs:
                self.state["epoch"] = epoch + 1
                self.state["history"].append({"epoch": epoch + 1, "step": self.state["step"],
                                              "train_loss": train_loss, "validation": {}})
                self.save_checkpoint("last", with_state=True)
                self._log_epoch(epoch, train_loss, {}, (time.monotonic() - started) / (epoch + 1 - first))
                continue
            validation = self.validate()
            for name, value in validation.items():
                task = next(s.task for s in self.seen if s.task.name == name)
                self.writer.add_scalar(f"validation/task{task.id}_loss", value, self.step_offset + self.state["step"])
            score = self._score(validation)
            self.state["epoch"] = epoch + 1
            self.state["history"].append({"epoch": epoch + 1, "step": self.state["step"], "train_loss": train_loss,
                                          "validation": validation})
            if self.state["best"] is None or score < self.state["best"]["score"]:
                self.state["best"] = {"epoch": epoch + 1, "score": score}
                self.save_checkpoint("best")
            if self.settings.save_every_epochs and (epoch + 1) % self.settings.save_every_epochs == 0:
                self.save_checkpoint(f"epoch{epoch + 1}")
            self.save_checkpoint("last", with_state=True)
            self._log_epoch(epoch, train_loss, validation, (time.monotonic() - started) / (epoch + 1 - first))
        self.writer.flush()
        return self.results() if self.world.is_main else {}

    def _log_epoch(self, epoch: int, train_loss: float, validation: dict[str, float], seconds: float) -> None:
        """One log line per epoch: the training loss, the learning rate the next step uses, the held-out loss of
        every task seen so far (when validated), the time this run has spent on the stage, seconds per epoch and
        the time the stage still needs."""
        import time

        if not hasattr(self, "_log_started"):  # the first epoch of this run took ``seconds``
            self._log_started = time.monotonic() - seconds
        elapsed = time.monotonic() - self._log_started
        left = (self.stage.epochs - epoch - 1) * seconds

        held_out = ", ".join(f"{name} {value:.4f}" for name, value in validation.items())
        LOG.info("%s epoch %d/%d: train loss %.4f, lr %.2e%s; %s elapsed, %.1f s/epoch, about %s left in this stage",
                 self.stage.output_name, epoch + 1, self.stage.epochs, train_loss, self.optim.lr,
                 f", validation {held_out}" if held_out else "", duration(elapsed), seconds, duration(left))

    def results(self) -> dict[str, Any]:
        """The stage's results (settings, validation history and matrix, each earlier task's forgetting
        label), also written to ``training_results.json``."""
        final = self.state["history"][-1]["validation"] if self.state["history"] else {}
        matrix = dict(self.previous.get("validation_matrix", {}))
        matrix[self.stage.output_name] = final
        baseline = {name: row.get(name.split("_", 1)[1]) for name, row in matrix.items()}
        forgetting = {}
        for stage in self.seen[:-1]:
            if stage.task.name not in final:
                continue
            loss, own = final[stage.task.name], baseline.get(stage.output_name)
            forgetting[stage.task.name] = {
                "loss": loss, "own_stage_loss": own, "ratio": loss / own if own else None,
                "label": forgetting_label(loss, self.settings.retained, self.settings.slight)}
        results = {
            "task_id": self.stage.task.id, "task_name": self.stage.task.name,
            "instruction": self.stage.task.instruction, "stage": self.stage.number, "epochs": self.stage.epochs,
            "learning_rate": self.stage.lr, "steps": self.state["step"],
            "best_validation_loss": self.state["best"]["score"] if self.state["best"] else None,
            "best_epoch": self.state["best"]["epoch"] if self.state["best"] else None,
            "select_best_by": self.settings.select_best_by, "final_validation": final,
            "validation_matrix": matrix, "forgetting": forgetting, "history": self.state["history"],
            "global_step_end": self.step_offset + self.state["step"],
        }
        write_json(self.out / RESULTS_FILE, results)
        return results
