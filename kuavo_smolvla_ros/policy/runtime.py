"""The ROS-free SmolVLA runtime: open a checkpoint, turn one observation into a 16-dim action chunk.

The prediction path is lerobot's own: ``preprocessor`` (batch, tokenise, normalise) ->
``SmolVLAPolicy.predict_action_chunk`` (flow matching, 32 -> 16 trim) -> ``postprocessor``
(unnormalise), relative actions included (lerobot's relative/absolute action steps in the saved
processors, ``policy/processors.py``). The runtime adds only what a robot needs around it: input checks,
uint8 images, seeded noise, step-count overrides and a warm-up.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.features import image_key
from kuavo_smolvla_ros.observation import Observation
from kuavo_smolvla_ros.policy.checkpoint import (
    POSTPROCESSOR_FILE,
    PREPROCESSOR_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointInfo,
    architecture_mismatch,
    inspect_checkpoint,
    new_smolvla,
    read_policy_config,
)

LOG = logging.getLogger(__name__)
__all__ = ["Observation", "PolicyRuntime", "load_policy", "load_processors"]


def load_policy(info: CheckpointInfo, device: str = "cpu", configure: Callable[[Any], None] | None = None):
    """The checkpoint's ``SmolVLAPolicy`` on ``device`` with every weight from ``model.safetensors``, built on
    the local VLM folder ``info.vlm_path`` (``config.vlm_model_name`` is that folder while it is loaded;
    :func:`kuavo_smolvla_ros.training.common.checkpoints.write_checkpoint` records the portable name again).

    ``configure(config)`` may change the config before the model is built (step counts, what trains).
    Raises :class:`CheckpointError` if the config cannot be read or the weights do not fit the architecture.
    """
    import copy

    from safetensors.torch import load_model

    config = copy.deepcopy(info.policy_config) if info.policy_config is not None else read_policy_config(info.path)
    config.vlm_model_name = str(info.vlm_path)
    config.load_vlm_weights = False  # every weight comes from model.safetensors
    config.device = device
    if configure:
        configure(config)
    policy = new_smolvla(config)
    try:
        missing, unexpected = load_model(policy, str(info.path / WEIGHTS_FILE), strict=False, device=device)
    except RuntimeError as err:  # tensors of another shape
        raise CheckpointError(f"{info.path / WEIGHTS_FILE} does not match the architecture in config.json "
                              f"({' '.join(str(err).split())[:300]})") from None
    if missing or unexpected:
        raise architecture_mismatch(info.path / WEIGHTS_FILE, missing, unexpected)
    return policy.to(device)


def load_processors(info: CheckpointInfo, config, device: str = "cpu"):
    """The checkpoint's saved (preprocessor, postprocessor): its normalisation statistics, the tokenizer of
    its local VLM folder, tensors moved to ``device``. Raises :class:`CheckpointError` if lerobot cannot load
    them."""
    from lerobot.policies.factory import make_pre_post_processors

    try:
        return make_pre_post_processors(
            config,
            pretrained_path=str(info.path),
            preprocessor_overrides={
                "tokenizer_processor": {"tokenizer_name": str(info.vlm_path)},
                "device_processor": {"device": device},
            },
        )
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise CheckpointError(f"{info.path / PREPROCESSOR_FILE} / {POSTPROCESSOR_FILE}: lerobot cannot load the "
                              f"processors ({' '.join(str(err).split())[:300]})") from None


class PolicyRuntime:
    """A loaded SmolVLA checkpoint that predicts (chunk_size, 16) float32 actions in robot units."""

    def __init__(self, policy, preprocessor, postprocessor, info: CheckpointInfo, device: str):
        self.policy = policy
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.info = info
        self.device = device
        self._tokenizer = None

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        checkpoint: str | Path,
        *,
        device: str = "cpu",
        vlm_path: str | Path | None = None,
        num_steps: int | None = None,
        chunk_size: int | None = None,
        n_action_steps: int | None = None,
    ) -> PolicyRuntime:
        """Load ``checkpoint`` on ``device``; ``vlm_path`` overrides the VLM folder the checkpoint names and the
        step counts override the checkpoint's (``chunk_size`` may only shrink).

        Raises :class:`CheckpointError` (one line naming the file and key) for everything
        :func:`~kuavo_smolvla_ros.policy.checkpoint.inspect_checkpoint` refuses, ``ValueError`` for bad
        overrides and ``RuntimeError`` for an unavailable device."""
        info = inspect_checkpoint(checkpoint, vlm_path)
        device = _check_device(device)
        policy = load_policy(info, device, lambda config: _apply_overrides(config, info, num_steps, chunk_size,
                                                                           n_action_steps))
        policy.eval()
        preprocessor, postprocessor = load_processors(info, policy.config, device)
        runtime = cls(policy, preprocessor, postprocessor, info, device)
        LOG.info("opened %s on %s (%d steps, chunk %d)", info.path, device, runtime.num_steps, runtime.chunk_size)
        return runtime

    # ----------------------------------------------------------------------------------------------
    @property
    def config(self):
        return self.policy.config

    @property
    def chunk_size(self) -> int:
        return int(self.config.chunk_size)

    @property
    def n_action_steps(self) -> int:
        return int(self.config.n_action_steps)

    @property
    def num_steps(self) -> int:
        return int(self.config.num_steps)

    @num_steps.setter
    def num_steps(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"num_steps must be >= 1, got {value}")
        self.config.num_steps = int(value)

    @property
    def cameras(self) -> list[str]:
        return list(self.info.cameras)

    @property
    def noise_shape(self) -> tuple[int, int]:
        return self.chunk_size, int(self.config.max_action_dim)

    def make_noise(self, seed: int) -> np.ndarray:
        """The flow-matching start noise for ``seed`` (standard normal, ``noise_shape``)."""
        return np.random.default_rng(seed).standard_normal(self.noise_shape).astype(np.float32)

    def token_count(self, instruction: str) -> int:
        """Number of tokens ``instruction`` has before SmolVLA truncates to ``tokenizer_max_length``."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.info.vlm_path))
        return len(self._tokenizer(instruction + "\n")["input_ids"])

    # ----------------------------------------------------------------------------------------------
    def make_batch(self, observation: Observation) -> dict:
        """The un-batched lerobot input dict for ``observation`` (float32 CHW images in [0, 1])."""
        import torch

        state = np.asarray(observation.state, dtype=np.float32)
        if state.shape != (robot.STATE_DIM,):
            raise ValueError(f"state must have shape ({robot.STATE_DIM},), got {state.shape}")
        if not np.all(np.isfinite(state)):
            raise ValueError("state contains non-finite values")
        if not isinstance(observation.instruction, str) or not observation.instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        batch = {features.OBS_STATE: torch.from_numpy(state), "task": observation.instruction}
        missing = [c for c in self.info.cameras if c not in observation.images]
        if missing:
            raise ValueError(f"missing camera images: {', '.join(missing)} (policy cameras: {self.info.cameras})")
        for name in self.info.cameras:
            image = np.asarray(observation.images[name])
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"camera {name}: expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
            tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
            batch[image_key(name)] = tensor.to(torch.float32).div_(255.0)
        return batch

    # ------------------------------------------------------------------------- real-time chunking
    @property
    def rtc_enabled(self) -> bool:
        return getattr(self.config, "rtc_config", None) is not None and self.config.rtc_config.enabled

    def enable_rtc(self, execution_horizon: int | None = None) -> None:
        """Turn on lerobot's real-time chunking (``lerobot.policies.rtc``): :meth:`predict_chunk` with a
        ``prefix`` then generates the chunk conditioned on the actions that still execute while it is computed
        (inpainting guided over ``execution_horizon`` steps; default lerobot's)."""
        from lerobot.policies.rtc.configuration_rtc import RTCConfig

        settings = {} if execution_horizon is None else {"execution_horizon": int(execution_horizon)}
        self.config.rtc_config = RTCConfig(enabled=True, **settings)
        self.policy.init_rtc_processor()

    def _model_space_prefix(self, prefix: np.ndarray, state: np.ndarray):
        """``prefix`` ((T, 16) absolute actions in robot units) as the model predicts actions: relative to
        ``state`` when the checkpoint's processors say so (lerobot's ``reanchor_relative_rtc_prefix``), then
        normalised by the checkpoint's statistics. Returns a (T, 16) tensor on the runtime's device."""
        import torch
        from lerobot.policies.rtc import reanchor_relative_rtc_prefix
        from lerobot.processor import (
            NormalizerProcessorStep,
            RelativeActionsProcessorStep,
            TransitionKey,
            create_transition,
        )

        steps = list(self.preprocessor.steps)
        relative = next((s for s in steps if isinstance(s, RelativeActionsProcessorStep) and s.enabled), None)
        normalizer = next((s for s in steps if isinstance(s, NormalizerProcessorStep)), None)
        actions = torch.from_numpy(np.asarray(prefix, dtype=np.float32))
        if relative is not None:
            return reanchor_relative_rtc_prefix(actions, torch.from_numpy(np.asarray(state, dtype=np.float32)),
                                                relative, normalizer, self.device)
        transition = create_transition(action=actions)
        if normalizer is not None:
            transition = normalizer(transition)
        return transition[TransitionKey.ACTION].to(self.device)

    def predict_chunk(self, observation: Observation, *, noise: np.ndarray | None = None,
                      seed: int | None = None, prefix: np.ndarray | None = None,
                      inference_delay: int = 0) -> np.ndarray:
        """(chunk_size, 16) float32 actions in robot units for ``observation``.

        Deterministic for a given ``noise`` (shape ``noise_shape``) or ``seed``; otherwise fresh noise.
        With real-time chunking on (:meth:`enable_rtc`), ``prefix`` ((T, 16) absolute actions: what the previous
        chunk still holds from this observation on) guides the new chunk, whose first ``inference_delay``
        actions are executed from the prefix while it is computed. Raises ``ValueError`` for a prefix without
        real-time chunking, of the wrong shape or not finite.
        """
        import torch

        batch = self.make_batch(observation)
        guidance = {}
        if prefix is not None:
            if not self.rtc_enabled:
                raise ValueError("a prefix needs real-time chunking (PolicyRuntime.enable_rtc)")
            prefix = np.asarray(prefix, dtype=np.float32)
            if prefix.ndim != 2 or prefix.shape[1] != robot.ACTION_DIM or not np.all(np.isfinite(prefix)):
                raise ValueError(f"prefix must be finite (T, {robot.ACTION_DIM}), got {prefix.shape}")
            guidance = {"inference_delay": int(inference_delay),
                        "prev_chunk_left_over": self._model_space_prefix(prefix, observation.state)}
        if noise is None and seed is not None:
            noise = self.make_noise(seed)
        noise_tensor = None
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float32)
            if noise.shape != self.noise_shape:
                raise ValueError(f"noise must have shape {self.noise_shape}, got {noise.shape}")
            noise_tensor = torch.from_numpy(noise).unsqueeze(0).to(self.device)
        # RTC's guidance takes gradients through the denoiser: no_grad (which it can lift), not inference_mode
        with torch.no_grad() if guidance else torch.inference_mode():
            processed = self.preprocessor(batch)
            actions = self.policy.predict_action_chunk(processed, noise=noise_tensor, **guidance)
            actions = self.postprocessor(actions)
        return actions[0].to(torch.float32).cpu().numpy()

    def warmup(self, iterations: int = 1) -> float:
        """Run ``iterations`` predictions on a neutral observation; returns the last one's seconds."""
        observation = self.dummy_observation()
        elapsed = 0.0
        for i in range(max(1, iterations)):
            start = time.perf_counter()
            self.predict_chunk(observation, seed=i)
            elapsed = time.perf_counter() - start
        return elapsed

    def dummy_observation(self, instruction: str | None = None) -> Observation:
        """Grey images of the checkpoint's input size, the layout's mid-range state, a task text."""
        images = {}
        for name in self.info.cameras:
            _, height, width = self.info.image_shapes[name]
            images[name] = np.full((height, width, 3), 128, dtype=np.uint8)
        state = ((robot.LOWER_LIMITS + robot.UPPER_LIMITS) / 2).astype(np.float32)
        texts = self.info.metadata.instructions if self.info.metadata else []
        return Observation(images, state, instruction or (texts[0] if texts else "do the task"))


def _check_device(device: str) -> str:
    import torch

    device = str(device).strip()
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise RuntimeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def _apply_overrides(config, info: CheckpointInfo, num_steps: int | None, chunk_size: int | None,
                     n_action_steps: int | None) -> None:
    if num_steps is not None:
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        config.num_steps = int(num_steps)
    if chunk_size is not None:
        if not 1 <= chunk_size <= info.chunk_size:
            raise ValueError(f"chunk_size must be in 1..{info.chunk_size} (the checkpoint's), got {chunk_size}")
        config.chunk_size = int(chunk_size)
    if n_action_steps is not None:
        config.n_action_steps = int(n_action_steps)
    if config.n_action_steps > config.chunk_size:
        if n_action_steps is not None:
            raise ValueError(f"n_action_steps ({n_action_steps}) must be <= chunk_size ({config.chunk_size})")
        config.n_action_steps = config.chunk_size
