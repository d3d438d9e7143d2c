"""Build SmolVLA checkpoints offline: a local VLM folder plus random weights, in lerobot's format.

Used by tests, benchmarks and the demo, where no hub (and no pretrained weights) can be reached.
Three architectures are provided: ``tiny`` (~0.5 M parameters, trains and predicts in milliseconds on a
CPU), ``small`` (a chunk takes about a control period on a CPU, for timing benchmarks) and ``full``
(the SmolVLM2-500M dimensions SmolVLA uses, 450 M parameters), all with random weights.

Command line: ``kuavo-smolvla-tiny OUTPUT_DIR [--size tiny|full] [--image-size N] [--seed N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from kuavo_smolvla_ros import features, robot
from kuavo_smolvla_ros.atomic import folder_problem
from kuavo_smolvla_ros.contract.profile import default_profile
from kuavo_smolvla_ros.features import IMAGE_SIDE, camera_name_problem, image_key
from kuavo_smolvla_ros.policy.checkpoint import (
    ACTION_MODES,
    METADATA_FILE,
    VLM_FOLDER,
    CheckpointMetadata,
    installed_lerobot_version,
    make_portable,
    new_smolvla,
    share_files,
)
from kuavo_smolvla_ros.tasks import default_catalog

# Special tokens SmolVLA and the SmolVLM processor look up on the tokenizer.
_SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
    "video_token": "<video>",
}
_EOS, _PAD = "<|endoftext|>", "<|pad|>"


@dataclass(frozen=True)
class VLMSpec:
    """Dimensions of the SmolVLM backbone (text: a Llama; vision: a SigLIP)."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_head_dim: int
    text_intermediate: int
    vocab_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    image_size: int
    patch_size: int
    scale_factor: int
    #: Layers of the text model SmolVLA keeps (``num_vlm_layers``).
    vlm_layers: int


TINY = VLMSpec(
    text_hidden=64, text_layers=4, text_heads=4, text_kv_heads=2, text_head_dim=16, text_intermediate=128,
    vocab_size=1024, vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=64,
    image_size=64, patch_size=16, scale_factor=2, vlm_layers=4,
)
#: Between the two: ~0.1-0.2 s per chunk on a 2-core CPU, comparable to a control period (benchmarks).
SMALL = VLMSpec(
    text_hidden=256, text_layers=8, text_heads=4, text_kv_heads=2, text_head_dim=64, text_intermediate=1024,
    vocab_size=1024, vision_hidden=192, vision_layers=4, vision_heads=3, vision_intermediate=768,
    image_size=256, patch_size=16, scale_factor=2, vlm_layers=8,
)
#: SmolVLM2-500M-Video-Instruct's dimensions, truncated to 16 text layers as SmolVLA does.
FULL = VLMSpec(
    text_hidden=960, text_layers=32, text_heads=15, text_kv_heads=5, text_head_dim=64, text_intermediate=2560,
    vocab_size=49280, vision_hidden=768, vision_layers=12, vision_heads=12, vision_intermediate=3072,
    image_size=512, patch_size=16, scale_factor=4, vlm_layers=16,
)
SIZES = {"tiny": TINY, "small": SMALL, "full": FULL}


@dataclass
class TinyCheckpointSpec:
    """Everything that defines a built checkpoint (all fields have working defaults)."""

    size: str = "tiny"
    cameras: tuple[str, ...] = field(default_factory=lambda: default_profile().camera_names)
    #: Camera image (height, width) recorded in the policy's input features.
    image_shape: tuple[int, int] = (64, 64)
    chunk_size: int = 50
    n_action_steps: int = 8
    num_steps: int = 10
    tokenizer_max_length: int = 48
    seed: int = 0
    #: Normalisation statistics: feature -> {"mean": (16,), "std": (16,)}; None = mean 0, std 1.
    stats: dict[str, dict[str, list[float]]] | None = None
    #: "absolute" or "relative" (the model predicts action - state; lerobot's relative/absolute action
    #: processor steps in the saved processors subtract and add the state).
    action_mode: str = "absolute"
    #: Train everything (tiny random models need it) instead of lerobot's expert-only default.
    train_everything: bool = False
    extra_texts: list[str] = field(default_factory=list)


def _train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [_EOS, _PAD, *_SPECIAL_TOKENS.values()]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=_EOS, eos_token=_EOS, pad_token=_PAD, unk_token=_EOS,
        extra_special_tokens=dict(_SPECIAL_TOKENS), model_max_length=8192,
    )


def build_vlm_folder(path: str | Path, spec: VLMSpec = TINY, texts: list[str] | None = None) -> Path:
    """Write a SmolVLM config, processor and tokenizer (trained on ``texts``) into ``path``."""
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    texts = list(texts or default_catalog().instructions)
    tokenizer = _train_tokenizer([*texts, *(t.lower() for t in texts)], min(spec.vocab_size, 1024))
    image_seq_len = (spec.image_size // spec.patch_size) ** 2 // spec.scale_factor**2
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=False, size={"longest_edge": spec.image_size},
        max_image_size={"longest_edge": spec.image_size},
    )
    processor = SmolVLMProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=SmolVLMVideoProcessor(),
        image_seq_len=image_seq_len,
    )
    processor.save_pretrained(str(path))
    config = SmolVLMConfig(
        text_config={
            "model_type": "llama", "hidden_size": spec.text_hidden, "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads, "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_head_dim, "intermediate_size": spec.text_intermediate,
            "vocab_size": max(spec.vocab_size, len(tokenizer)), "max_position_embeddings": 8192,
            "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "smolvlm_vision", "hidden_size": spec.vision_hidden,
            "num_hidden_layers": spec.vision_layers, "num_attention_heads": spec.vision_heads,
            "intermediate_size": spec.vision_intermediate, "image_size": spec.image_size,
            "patch_size": spec.patch_size,
        },
        scale_factor=spec.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(_SPECIAL_TOKENS["image_token"]),
        vocab_size=max(spec.vocab_size, len(tokenizer)),
        pad_token_id=tokenizer.pad_token_id,
    )
    config.save_pretrained(str(path))
    return path


def default_stats() -> dict[str, dict[str, list[float]]]:
    """Identity normalisation for state and action (mean 0, std 1)."""
    identity = {"mean": [0.0] * robot.STATE_DIM, "std": [1.0] * robot.STATE_DIM}
    return {features.OBS_STATE: dict(identity), features.ACTION: dict(identity)}


def make_policy_config(vlm_path: str | Path, spec: TinyCheckpointSpec, device: str = "cpu"):
    """A ``SmolVLAConfig`` for the Kuavo layout on the local VLM folder ``vlm_path`` (recorded by its absolute
    path, as lerobot needs to build the model; :func:`build_checkpoint` then records a portable name)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    vlm = SIZES[spec.size]
    height, width = spec.image_shape
    inputs = {features.OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(robot.STATE_DIM,))}
    for name in spec.cameras:
        inputs[image_key(name)] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width))
    return SmolVLAConfig(
        input_features=inputs,
        output_features={features.ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(robot.ACTION_DIM,))},
        vlm_model_name=str(Path(vlm_path).resolve()),
        load_vlm_weights=False,
        num_vlm_layers=vlm.vlm_layers,
        resize_imgs_with_padding=(vlm.image_size, vlm.image_size),
        chunk_size=spec.chunk_size,
        n_action_steps=spec.n_action_steps,
        num_steps=spec.num_steps,
        tokenizer_max_length=spec.tokenizer_max_length,
        max_state_dim=robot.PADDED_DIM,
        max_action_dim=robot.PADDED_DIM,
        freeze_vision_encoder=not spec.train_everything,
        train_expert_only=not spec.train_everything,
        device=device,
        push_to_hub=False,
    )


def check_stats(stats: dict[str, dict[str, list[float]]]) -> None:
    """Raise ``ValueError`` unless state and action each have finite 16-dim mean and positive std."""
    for feature in (features.OBS_STATE, features.ACTION):
        entry = stats.get(feature) if isinstance(stats, dict) else None
        if not isinstance(entry, dict) or "mean" not in entry or "std" not in entry:
            raise ValueError(f"stats must give 'mean' and 'std' for {feature!r}")
        mean, std = np.asarray(entry["mean"], dtype=float), np.asarray(entry["std"], dtype=float)
        if mean.shape != (robot.STATE_DIM,) or std.shape != (robot.STATE_DIM,):
            raise ValueError(f"stats for {feature!r} must be {robot.STATE_DIM} values, got {mean.shape} / {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"stats for {feature!r} must be finite with std > 0")


def stats_as_tensors(stats: dict[str, dict[str, list[float]]]):
    import torch

    return {k: {s: torch.as_tensor(np.asarray(v, dtype=np.float32)) for s, v in d.items()} for k, d in stats.items()}


def build_checkpoint(output_dir: str | Path, spec: TinyCheckpointSpec | None = None,
                     vlm_dir: str | Path | None = None) -> Path:
    """Build a randomly initialised SmolVLA for the Kuavo layout and save it in lerobot's format.

    The VLM folder (config, processor, tokenizer; no weights) is built in ``vlm_dir`` (default
    ``OUTPUT_DIR/vlm``); the policy (``config.json``, ``model.safetensors``, pre/post processors) and this
    project's metadata go to ``OUTPUT_DIR``. The checkpoint is self-contained: the VLM folder is shipped as
    ``OUTPUT_DIR/vlm``, named ``kuavo-smolvla/vlm-<content hash>`` in ``config.json`` and in the preprocessor's
    tokenizer step, and put in the local Hugging Face cache under that name for lerobot's own loader
    (:func:`~kuavo_smolvla_ros.policy.checkpoint.make_portable`).
    """
    import torch

    from kuavo_smolvla_ros.policy.processors import make_processors

    spec = spec or TinyCheckpointSpec()
    if spec.size not in SIZES:
        raise ValueError(f"unknown size {spec.size!r}; expected one of {sorted(SIZES)}")
    if spec.action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {spec.action_mode!r}")
    stats = spec.stats or default_stats()
    check_stats(stats)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    vlm_dir = Path(vlm_dir) if vlm_dir is not None else output_dir / VLM_FOLDER
    texts = [*default_catalog().instructions, *spec.extra_texts]
    build_vlm_folder(vlm_dir, SIZES[spec.size], texts)

    config = make_policy_config(vlm_dir, spec)
    torch.manual_seed(spec.seed)
    policy = new_smolvla(config)
    preprocessor, postprocessor = make_processors(config, stats_as_tensors(stats), spec.action_mode)
    policy.save_pretrained(output_dir)
    preprocessor.save_pretrained(output_dir)
    postprocessor.save_pretrained(output_dir)
    CheckpointMetadata(
        action_mode=spec.action_mode,
        cameras=list(spec.cameras),
        instructions=default_catalog().instructions,
        origin=f"kuavo_smolvla_ros.policy.tiny ({spec.size}, seed {spec.seed}, random weights)",
        extra={"builder": asdict(spec) | {"stats": None}},
        lerobot_version=installed_lerobot_version(),
    ).save(output_dir)
    make_portable(output_dir, vlm_dir)
    share_files(output_dir)
    return output_dir


TINY_EXIT_CODES = """exit status:
  0  the checkpoint is written (files of the same names in OUTPUT_DIR are replaced)
  2  refused, one "error:" line, nothing written: bad arguments (a camera named twice), --stats unreadable
     or not finite 16-dim mean/std for observation.state and action, OUTPUT_DIR is a file
  130  interrupted (Ctrl-C): one "interrupted" line
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=TINY_EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path, help="folder to write the checkpoint into")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="architecture (default tiny)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="camera image size in the input features (default 64x64 tiny, 480x640 full)")
    parser.add_argument("--cameras", nargs="+", default=list(default_profile().camera_names),
                        help="camera names (default: the Kuavo 4 Pro profile's)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    parser.add_argument("--action-mode", choices=("absolute", "relative"), default="absolute")
    parser.add_argument("--stats", type=Path, default=None,
                        help='JSON {"observation.state": {"mean": [16], "std": [16]}, "action": {...}}')
    args = parser.parse_args(argv)
    image_shape = tuple(args.image_size) if args.image_size else (
        (64, 64) if args.size == "tiny" else default_profile().cameras[0].size)
    low, high = IMAGE_SIDE
    if not all(low <= side <= high for side in image_shape):
        print(f"error: --image-size must be {low}..{high} pixels per side, got {image_shape[0]} {image_shape[1]}",
              file=sys.stderr)
        return 2
    bad_name = next(filter(None, map(camera_name_problem, args.cameras)), None)
    if bad_name:
        print(f"error: --cameras: {bad_name}", file=sys.stderr)
        return 2
    repeated = sorted({c for c in args.cameras if args.cameras.count(c) > 1})
    if repeated:
        print(f"error: --cameras names {', '.join(repeated)} more than once", file=sys.stderr)
        return 2
    if args.output_dir.exists() and not args.output_dir.is_dir():
        print(f"error: {args.output_dir} exists and is not a folder", file=sys.stderr)
        return 2
    problem = folder_problem(args.output_dir)
    if problem:
        print(f"error: {args.output_dir}: {problem}", file=sys.stderr)
        return 2
    stats = None
    if args.stats is not None:
        try:
            stats = json.loads(args.stats.read_text())
            check_stats(stats)
        except OSError as err:
            print(f"error: --stats {args.stats}: {err.strerror}", file=sys.stderr)
            return 2
        except (ValueError, AttributeError) as err:  # (json's errors are ValueErrors)
            print(f"error: --stats {args.stats}: {err}", file=sys.stderr)
            return 2
    spec = TinyCheckpointSpec(size=args.size, cameras=tuple(args.cameras), image_shape=image_shape,
                              seed=args.seed, action_mode=args.action_mode, stats=stats)
    path = build_checkpoint(args.output_dir, spec)
    meta = json.loads((path / METADATA_FILE).read_text())
    print(f"wrote {args.size} SmolVLA checkpoint to {path} (cameras: {', '.join(meta['cameras'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
