"""Reflow distillation ("2-rectified flow"): a student that needs 1-2 denoising steps where its teacher needs 10.

For observations of the curriculum's datasets (every task, with its instruction), the frozen teacher
integrates its flow from sampled noise (``training/pairs.py``, cached on disk); the student, initialised
from the teacher and sharing its frozen VLM (``training/reflow_models.py``), learns the straight line from
each noise to the teacher's chunk with lerobot's own flow-matching loss. Validation measures fidelity: the
mean squared error (normalised units) between the student's ``num_steps``-step chunk and the teacher's
10-step chunk for the same held-out observation and noise, beside the teacher run at ``num_steps`` itself.

Outputs under ``output_dir``: ``best/``, ``last/`` (with ``training_state/`` to resume), ``step{N}/``
(lerobot checkpoints whose ``num_steps`` is the student's, with ``kuavo_smolvla.json`` recording the teacher
and the reflow settings), ``reflow_results.json``, ``training.png``, ``tensorboard/`` and ``pairs/``.
``training/train_reflow.py`` is the Hydra front end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from time import monotonic
from typing import Any

import numpy as np
import torch

from kuavo_smolvla_ros import features
from kuavo_smolvla_ros.atomic import write_json
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.policy.checkpoint import CheckpointMetadata
from kuavo_smolvla_ros.policy.runtime import load_processors
from kuavo_smolvla_ros.training.common.checkpoints import start_progress, write_checkpoint, written_checkpoints
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError
from kuavo_smolvla_ros.training.common.loop import autocast, duration, tensorboard_writer
from kuavo_smolvla_ros.training.common.optim import Optimisation
from kuavo_smolvla_ros.training.common.plots import two_panels
from kuavo_smolvla_ros.training.common.run_record import record_run
from kuavo_smolvla_ros.training.curriculum import Stage, load_curriculum
from kuavo_smolvla_ros.training.datasets import check_datasets, stage_metadata, training_dataset
from kuavo_smolvla_ros.training.distributed import flow_noise
from kuavo_smolvla_ros.training.memory import batch_loader
from kuavo_smolvla_ros.training.pairs import (
    NOISE_KEY,
    TARGET_KEY,
    PairedDataset,
    Pairs,
    cached_pairs,
    evenly_spaced,
    make_pairs,
    sample_chunks,
    teacher_identity,
)
from kuavo_smolvla_ros.training.reflow_config import ReflowConfig, reflow_config
from kuavo_smolvla_ros.training.reflow_models import ReflowModels, build_reflow_models
from kuavo_smolvla_ros.training.sampling import split_episodes

LOG = logging.getLogger(__name__)
#: The run's results (settings, fidelity history, baselines), in ``output_dir``.
REFLOW_RESULTS_FILE = "reflow_results.json"


class BalancedSteps(torch.utils.data.Sampler):
    """Pair indices for steps ``start`` .. ``steps - 1``: each sample picks a task uniformly, then one of its
    pairs; keyed by the step, so a resumed run draws what the uninterrupted one would have."""

    def __init__(self, sizes: list[int], batch_size: int, seed: int, start: int, steps: int):
        self.sizes = torch.as_tensor(sizes)
        self.offsets = torch.cumsum(torch.as_tensor([0, *sizes[:-1]]), 0)
        self.batch_size, self.seed, self.start, self.steps = batch_size, seed, start, steps

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            generator = torch.Generator().manual_seed(self.seed * 7_919 + step)
            tasks = torch.randint(len(self.sizes), (self.batch_size,), generator=generator)
            within = (torch.rand(self.batch_size, generator=generator) * self.sizes[tasks]).long()
            yield (self.offsets[tasks] + within).tolist()


@contextmanager
def step_count(policy, num_steps: int):
    """``policy`` integrating with ``num_steps`` Euler steps inside the block."""
    saved = policy.config.num_steps
    policy.config.num_steps = int(num_steps)
    try:
        yield policy
    finally:
        policy.config.num_steps = saved


class ReflowTrainer:
    """Distils ``config.teacher`` into a ``config.num_steps``-step student; ``run()`` returns the results."""

    def __init__(self, config: ReflowConfig, stages: list[Stage]):
        self.config, self.stages = config, stages
        self.out = config.output_dir
        self.out.mkdir(parents=True, exist_ok=True)
        self.state, resume = start_progress(self.out / "last", {"step": 0, "best": None, "history": [],
                                                                "train_loss": []}, config.seed)
        self.models: ReflowModels = build_reflow_models(
            config.teacher, config.device, config.teacher_num_steps, config.num_steps,
            student_weights=self.out / "last" if resume is not None else None)
        self.teacher, self.student = self.models.teacher, self.models.student
        for line in (*self.models.log_lines(), *(f"[reflow] {note}" for note in config.notes)):
            LOG.info(line)
        self.preprocessor, self.postprocessor = load_processors(config.teacher, self.student.config, config.device)
        self._make_data()
        self.optim = Optimisation(self.student, config.optim, config.lr, config.warmup_steps, config.decay_steps)
        if resume is not None:
            self.optim.load(resume)
            LOG.info("[reflow] resuming %s at step %d", self.out, self.state["step"])
        self.writer = tensorboard_writer(self.out / "tensorboard")

    # ---------------------------------------------------------------------------------- data
    def _dataset(self, stage: Stage, episodes: list[int]):
        """``stage``'s frames of ``episodes`` (observations; no action chunks are needed), or (``data_cache:
        memory``) their cached in-memory copy."""
        cache_dir = None
        if self.config.data_cache == "memory":
            from kuavo_smolvla_ros.training.memory import CACHE_DIR

            cache_dir = self.config.data_cache_dir or self.out / CACHE_DIR
        return training_dataset(stage.dataset, episodes, None, cache_dir, num_workers=self.config.num_workers,
                                batch_size=self.config.batch_size)

    def _pairs(self, stage: Stage, split: str, episodes: list[int], dataset, max_frames: int | None,
               seed: int) -> Pairs:
        """The teacher's pairs for ``dataset`` (``stage``'s ``episodes``), from the cache when it has them."""
        from kuavo_smolvla_ros.training.memory import cache_key

        config = self.config
        frames = evenly_spaced(len(dataset), max_frames)
        key = {"teacher": teacher_identity(config.teacher.path, config.teacher_num_steps),
               "dataset": cache_key(stage.dataset, episodes, None),
               "frames": frames, "per_observation": config.pairs_per_observation, "seed": seed,
               "chunk": self.teacher.config.chunk_size}
        return cached_pairs(config.pairs_dir, f"{stage.output_name}_{split}", key, lambda: make_pairs(
            self.teacher, self.preprocessor, dataset, frames, config.pairs_per_observation, seed,
            config.pairs_batch_size, config.device, config.num_workers, autocast(config.device, config.bf16),
            desc=f"teacher pairs {stage.task.name} ({split})"))

    def _make_data(self) -> None:
        config = self.config
        train_sets, train_pairs, self.validation = [], [], {}
        for stage in self.stages:
            total = stage_metadata(stage).total_episodes
            train, held_out = split_episodes(total, stage.validation_episodes, seed=config.seed + stage.task.id)
            dataset = self._dataset(stage, train)
            train_sets.append(dataset)
            train_pairs.append(self._pairs(stage, "train", train, dataset, config.pairs_max_frames,
                                           config.seed + stage.task.id))
            if held_out and config.validation_freq:
                held = self._dataset(stage, held_out)
                self.validation[stage.task.name] = (held, self._pairs(stage, "validation", held_out, held,
                                                                      config.validation_frames,
                                                                      config.seed + 100 + stage.task.id))
        offsets = np.cumsum([0, *[len(d) for d in train_sets[:-1]]]).tolist()
        if config.data_cache == "memory":
            from kuavo_smolvla_ros.training.memory import MemoryDataset

            data = MemoryDataset.concat(train_sets)
        else:
            data = torch.utils.data.ConcatDataset(train_sets)
        self.pair_counts = {s.task.name: len(p) for s, p in zip(self.stages, train_pairs, strict=True)}
        self.train_data = PairedDataset(data, Pairs.concat(train_pairs, offsets))
        self.sizes = [len(p) for p in train_pairs]

    # ------------------------------------------------------------------------------ training
    def _student_loss(self, batch: dict, step: int) -> torch.Tensor:
        """lerobot's flow-matching loss of the student with the teacher's chunk as the target and the pair's
        noise as the start: the straight line between them, at flow times drawn as SmolVLA draws them."""
        noise, target = batch.pop(NOISE_KEY), batch.pop(TARGET_KEY)
        processed = self.preprocessor(batch)
        processed[features.ACTION] = target.to(self.config.device)
        processed.pop("action_is_pad", None)  # the teacher's chunk is whole
        time = flow_noise(step, self.config.seed, len(target), len(target), 1, 1)[1]
        with autocast(self.config.device, self.config.bf16):
            per_sample, _ = self.student(processed, noise=noise.to(self.config.device),
                                         time=time.to(self.config.device), reduction="none")
        return per_sample.mean()

    def train(self) -> None:
        """Train from the current step to ``config.steps`` (balanced over the tasks), logging every
        ``log_freq`` steps, validating and saving as configured (:meth:`_checkpoints`). Raises
        :class:`TrainingError` on a non-finite loss, before the weights change."""
        from tqdm import tqdm

        config = self.config
        sampler = BalancedSteps(self.sizes, config.batch_size, config.seed, self.state["step"], config.steps)
        loader = batch_loader(self.train_data, sampler, config.num_workers)
        self.student.train()
        recent: list[float] = []
        started, first = monotonic(), self.state["step"]
        for batch in tqdm(loader, total=len(sampler), initial=0, desc="reflow", leave=False, disable=None):
            step = self.state["step"]
            recent.append(self.optim.step(self._student_loss(batch, step), step, self.writer, self.out / "last"))
            self.state["step"] = step = step + 1
            if step % config.log_freq == 0 or step == config.steps:
                self.state["train_loss"].append({"step": step, "loss": float(np.mean(recent))})
                elapsed = monotonic() - started
                left = elapsed / (step - first) * (config.steps - step)
                LOG.info("[reflow] step %d/%d loss %.5f lr %.2e; %s elapsed, about %s left", step, config.steps,
                         np.mean(recent), self.optim.lr, duration(elapsed), duration(left))
                recent = []
            self._checkpoints(step)
        self.writer.flush()

    def _checkpoints(self, step: int) -> None:
        config = self.config
        validate = config.validation_freq and (step % config.validation_freq == 0 or step == config.steps)
        if validate:
            fidelity = self.validate()
            score = float(np.mean(list(fidelity.values())))
            self.state["history"].append({"step": step, "fidelity_mse": fidelity, "mean": score})
            for name, value in fidelity.items():
                self.writer.add_scalar(f"validation/fidelity_mse_{name}", value, step)
            self.writer.add_scalar("validation/fidelity_mse_mean", score, step)
            LOG.info("[reflow] step %d fidelity MSE (student %d steps vs teacher %d): %s", step, config.num_steps,
                     config.teacher_num_steps, ", ".join(f"{k} {v:.5f}" for k, v in fidelity.items()))
            if self.state["best"] is None or score < self.state["best"]["score"]:
                self.state["best"] = {"step": step, "score": score}
                self.save("best")
        elif not config.validation_freq and step == config.steps:
            self.save("best")
        if config.save_freq and step % config.save_freq == 0:
            self.save(f"step{step}")
        if (config.save_freq and step % config.save_freq == 0) or step == config.steps or validate:
            self.save("last", with_state=True)

    # ---------------------------------------------------------------------------- validation
    @torch.no_grad()
    def fidelity(self, policy, num_steps: int) -> dict[str, float]:
        """Per task: mean squared error (normalised units, 16 dims) between ``policy``'s chunks at ``num_steps``
        and the teacher's pairs, for the held-out observations and the pairs' noise."""
        policy.eval()
        results = {}
        for name, (dataset, pairs) in self.validation.items():
            total, count = 0.0, 0
            batches = [list(range(i, min(i + self.config.pairs_batch_size, len(pairs))))
                       for i in range(0, len(pairs), self.config.pairs_batch_size)]
            for rows, batch in zip(batches, batch_loader(PairedDataset(dataset, pairs), batches,
                                                         self.config.num_workers), strict=True):
                noise, target = batch.pop(NOISE_KEY), batch.pop(TARGET_KEY)
                with step_count(policy, num_steps), autocast(self.config.device, self.config.bf16):
                    chunks = sample_chunks(policy, self.preprocessor(batch), noise.to(self.config.device))
                total += float(((chunks.float().cpu() - target) ** 2).mean(dim=(1, 2)).sum())
                count += len(rows)
            results[name] = total / max(count, 1)
        return results

    def validate(self) -> dict[str, float]:
        """The student's held-out fidelity per task (:meth:`fidelity` at its own step count); leaves it in
        training mode."""
        fidelity = self.fidelity(self.student, self.config.num_steps)
        self.student.train()
        return fidelity

    def baselines(self) -> dict[str, dict[str, float]]:
        """The teacher itself at 1 and at the student's step count, without distillation (computed once)."""
        saved = self.state.setdefault("baselines", {})
        for steps in sorted({1, self.config.num_steps}):
            if str(steps) not in saved and self.validation:
                saved[str(steps)] = self.fidelity(self.teacher, steps)
                LOG.info("[reflow] baseline: teacher at %d step(s) vs its %d: %s", steps,
                         self.config.teacher_num_steps, ", ".join(f"{k} {v:.5f}" for k, v in saved[str(steps)].items()))
        return saved

    # -------------------------------------------------------------------------------- saving
    def metadata(self) -> CheckpointMetadata:
        teacher = self.config.teacher.metadata or CheckpointMetadata(
            cameras=list(self.config.teacher.cameras), instructions=[s.task.instruction for s in self.stages])
        return replace(teacher, origin=f"kuavo_smolvla_ros.training.reflow: {self.config.num_steps}-step reflow "
                                       f"student of {self.config.teacher.path}",
                       extra={"reflow": {**self.config.settings(), "step": self.state["step"],
                                         "teacher_origin": teacher.origin, "teacher_extra": teacher.extra}})

    def save(self, name: str, with_state: bool = False) -> Path:
        """Write the student as the checkpoint ``<output_dir>/name`` (with the training state to resume from
        when ``with_state``); returns its folder."""
        return write_checkpoint(self.out / name, self.student, self.preprocessor, self.postprocessor,
                                self.metadata(), self.optim.state(self.state) if with_state else None,
                                vlm_hub_id=self.config.teacher.vlm_hub_id)

    # ----------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Baselines, the initial fidelity (a fresh run), training; writes ``reflow_results.json`` and
        ``training.png`` and returns the results."""
        baselines = self.baselines()
        if self.state["step"] == 0 and self.config.validation_freq:
            initial = self.fidelity(self.student, self.config.num_steps)
            self.state["history"].append({"step": 0, "fidelity_mse": initial,
                                          "mean": float(np.mean(list(initial.values())))})
        self.train()
        results = {
            "teacher": str(self.config.teacher.path), "teacher_num_steps": self.config.teacher_num_steps,
            "num_steps": self.config.num_steps, "steps": self.state["step"], "pairs": self.pair_counts,
            "vlm_loads": self.models.vlm_loads, "vlm_instances": self.models.vlm_instances,
            "total_parameters": self.models.total_parameters,
            "trainable_parameters": self.models.trainable_parameters, "best": self.state["best"],
            "baselines": baselines, "history": self.state["history"], "train_loss": self.state["train_loss"],
            "settings": self.config.settings()}
        write_json(self.out / REFLOW_RESULTS_FILE, results)
        plot(results, self.out / "training.png")
        self.writer.close()
        return results


def plot(results: dict, path: Path) -> None:
    """The training loss, and the fidelity per task against the undistilled teacher at the same steps, as a PNG
    at ``path``."""
    with two_panels(path) as (_, loss, fidelity):
        loss.plot([p["step"] for p in results["train_loss"]], [p["loss"] for p in results["train_loss"]], color="black")
        loss.set(xlabel="step", ylabel="flow-matching loss (straight line to the teacher)", yscale="log",
                 title=f"reflow: {results['num_steps']}-step student")
        steps = [h["step"] for h in results["history"]]
        baseline = results["baselines"].get(str(results["num_steps"]), {})
        for index, task in enumerate(results["history"][-1]["fidelity_mse"] if results["history"] else []):
            color = f"C{index}"
            fidelity.plot(steps, [h["fidelity_mse"][task] for h in results["history"]], color=color, label=task)
            if task in baseline:
                fidelity.axhline(baseline[task], color=color, linestyle="--", linewidth=1)
        fidelity.set(xlabel="step", ylabel=f"MSE vs the teacher's {results['teacher_num_steps']} steps", yscale="log",
                     title=f"held-out fidelity (dashed: teacher at {results['num_steps']} steps)")
        if results["history"]:
            fidelity.legend()


def run(cfg: Mapping[str, Any], configs_dir: Path) -> dict[str, Any]:
    """Check the teacher (before anything else), the curriculum's datasets and cameras, then distil."""
    config = reflow_config(cfg)
    stages = load_curriculum(configs_dir, list(config.curriculum), config.data_root)
    metas = check_datasets(stages)
    missing = [image_key(c) for c in config.teacher.cameras if image_key(c) not in metas[0].features]
    if missing:
        raise TrainingConfigError(f"the teacher's cameras {missing} are not in {stages[0].dataset}")
    record_run(config.output_dir, cfg)  # a later command with other settings is refused, not resumed
    trainer = ReflowTrainer(config, stages)
    results = trainer.run()
    best = results["best"]
    line = (f"[reflow] done: {results['steps']} steps; best fidelity MSE {best['score']:.5f} at step {best['step']} "
            f"-> {config.output_dir / 'best'}" if best else f"[reflow] done -> {config.output_dir / 'best'}")
    LOG.info(line)
    if not LOG.hasHandlers():  # outside Hydra (which logs to the console): still shown
        print(line)
    for folder in written_checkpoints(config.output_dir):
        what = {"best": "best (the student to use)", "last": "last (with the training state to resume)"}.get(
            folder.name, folder.name)
        LOG.info("[reflow] checkpoint %s: %s", what, folder)
        if not LOG.hasHandlers():  # outside Hydra (which logs to the console): still shown
            print(f"[reflow] checkpoint {what}: {folder}")
    return results
