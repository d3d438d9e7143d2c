"""AdamW with linear warmup then cosine decay, and the one optimisation step both trainers take.

The schedule (:func:`lr_factor`) is ours, not lerobot's ``CosineDecayWithWarmupSchedulerConfig``
(``lerobot/optim/schedulers.py``, v0.6.1), because the two differ in the values they give and checkpoints
must resume on the very schedule they started with (``test/test_training_toolkit.py`` computes both):

* warmup: ours is ``(step + 1) / warmup``, reaching the peak at the last warmup step; lerobot's starts at
  ``1 / (warmup + 1)`` and is still below the peak at ``warmup - 1``;
* decay: ours runs ``decay_steps`` steps *after* the warmup; lerobot's cosine is measured from step 0, so
  the warmup eats into it (the decay ends at ``decay_steps``, not ``warmup + decay_steps``);
* lerobot's shrinks warmup and decay to the run's length when ``num_training_steps < num_decay_steps``,
  which a resumable stage (whose length is its epochs times the batches) does not want, and divides by the
  peak learning rate (a peak of 0 fails).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from kuavo_smolvla_ros.training.common.checkpoints import load_training_state
from kuavo_smolvla_ros.training.common.config import OptimConfig
from kuavo_smolvla_ros.training.common.errors import TrainingError


def lr_factor(step: int, warmup: int, decay: int, peak: float, floor: float) -> float:
    """Multiplier of the peak learning rate ``peak`` at optimizer step ``step`` (0-based): linear warmup
    ``(step + 1) / warmup`` over ``warmup`` steps, then cosine decay from 1 to ``floor / peak`` over the
    ``decay`` steps after it, then ``floor / peak`` (0 when ``peak`` is 0)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(decay, 1), 1.0)
    low = floor / peak if peak > 0 else 0.0
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))


class Optimisation:
    """AdamW over ``model``'s trainable parameters (those with ``requires_grad`` now), its learning rate
    scheduled by :func:`lr_factor` from the peak ``lr`` (warmup and decay in optimizer steps, floor
    ``config.min_lr``), and :meth:`step`."""

    def __init__(self, model: torch.nn.Module, config: OptimConfig, lr: float, warmup_steps: int, decay_steps: int):
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.grad_clip_norm = config.grad_clip_norm
        self.optimizer = torch.optim.AdamW(self.parameters, lr=lr, betas=tuple(config.betas), eps=config.eps,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(
            step, warmup_steps, decay_steps, lr, config.min_lr))

    @property
    def lr(self) -> float:
        """The learning rate the next step uses."""
        return self.scheduler.get_last_lr()[0]

    def step(self, loss: torch.Tensor, step: int, writer: Any, last_good: Path, reported: torch.Tensor | None = None,
             where: str = "", log_offset: int = 0) -> float:
        """One optimisation step on the scalar ``loss``: refuse a non-finite ``reported`` loss (default
        ``loss``) with a :class:`TrainingError` naming ``step`` (``where`` is appended, e.g. the epoch) and
        ``last_good`` (the checkpoint to go back to), before touching the weights; else zero the gradients,
        back-propagate, clip them to ``grad_clip_norm``, step the optimizer and the schedule, and log
        ``train/loss`` and ``train/lr`` to the TensorBoard ``writer`` at ``log_offset + step + 1`` (an offset
        makes consecutive stages follow each other). Returns the reported loss as a float."""
        reported = (loss if reported is None else reported).detach()
        if not torch.isfinite(reported):
            raise TrainingError(f"non-finite loss {float(reported)} at step {step}{where}; the last good checkpoint "
                                f"is {last_good}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        value = float(reported)
        writer.add_scalar("train/loss", value, log_offset + step + 1)
        writer.add_scalar("train/lr", self.lr, log_offset + step + 1)
        return value

    def state(self, progress: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
        """(optimizer, scheduler, ``progress``): the training state :func:`write_checkpoint` saves."""
        return self.optimizer, self.scheduler, progress

    def load(self, state_dir: Path) -> None:
        """Restore the optimizer, the schedule and the RNG from a checkpoint's ``training_state/``."""
        self.optimizer, self.scheduler = load_training_state(state_dir, self.optimizer, self.scheduler)
