"""Teacher and student for reflow, with one VLM between them.

The teacher checkpoint is read once (``load_policy``). The student is a copy of the teacher in which the
VLM module (vision encoder, connector, language model, and its processor) is *the teacher's own object*:
``copy.deepcopy`` is told to keep it. The VLM is frozen; the teacher is frozen entirely; the student trains
what lerobot's ``train_expert_only`` trains: the action expert and the state, action and time projections.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from kuavo_smolvla_ros.policy.checkpoint import WEIGHTS_FILE, CheckpointError, CheckpointInfo
from kuavo_smolvla_ros.policy.runtime import load_policy

LOG = logging.getLogger(__name__)


@dataclass
class ReflowModels:
    teacher: torch.nn.Module
    student: torch.nn.Module
    #: Times a checkpoint (and so a VLM) was read from disk to build both.
    vlm_loads: int
    #: Distinct VLM modules held by teacher and student together.
    vlm_instances: int
    total_parameters: int
    trainable_parameters: int

    @property
    def trainable_share(self) -> float:
        return self.trainable_parameters / max(self.total_parameters, 1)

    def log_lines(self) -> list[str]:
        return [f"[reflow] VLM loaded {self.vlm_loads} time(s); {self.vlm_instances} VLM instance shared by "
                "teacher and student, frozen",
                f"[reflow] total parameters: {self.total_parameters:,}",
                f"[reflow] trainable parameters: {self.trainable_parameters:,} ({100 * self.trainable_share:.2f}%): "
                "the action expert and its projections"]


def _freeze_settings(config) -> None:
    config.train_expert_only = True  # lerobot freezes the VLM and keeps it in eval mode
    config.freeze_vision_encoder = True


def build_reflow_models(teacher: CheckpointInfo, device: str, teacher_num_steps: int, num_steps: int,
                        student_weights: Path | None = None) -> ReflowModels:
    """The frozen teacher (``teacher_num_steps``) and its student (``num_steps``), sharing one VLM; the student
    starts from the teacher's weights, or from ``student_weights`` (a checkpoint folder, to resume)."""
    from safetensors.torch import load_model

    teacher_policy = load_policy(teacher, device, _freeze_settings)
    vlm_owner = teacher_policy.model.vlm_with_expert
    keep = {id(vlm_owner.vlm): vlm_owner.vlm, id(vlm_owner.processor): vlm_owner.processor}
    student = copy.deepcopy(teacher_policy, keep)
    for parameter in teacher_policy.parameters():
        parameter.requires_grad_(False)
    teacher_policy.eval()
    teacher_policy.config.num_steps = int(teacher_num_steps)
    student.config.num_steps = int(num_steps)
    shared = {id(p) for p in teacher_policy.parameters()} & {id(p) for p in student.parameters()}
    vlm_ids = {id(p) for p in vlm_owner.vlm.parameters()}
    if shared != vlm_ids or any(p.requires_grad for p in vlm_owner.vlm.parameters()):
        raise RuntimeError("reflow: the student must share exactly the teacher's VLM parameters, frozen")
    if student_weights is not None:
        missing, unexpected = load_model(student, str(Path(student_weights) / WEIGHTS_FILE), strict=False,
                                         device=device)
        if missing or unexpected:
            raise CheckpointError(f"{student_weights}: not a student of {teacher.path} "
                                  f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    instances = len({id(p.model.vlm_with_expert.vlm) for p in (teacher_policy, student)})
    total = sum(p.numel() for p in student.parameters())
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    return ReflowModels(teacher_policy, student, 1, instances, total, trainable)
