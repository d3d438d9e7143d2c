"""The training toolkit both trainers share (``training/common/``) and the atomic writes: the learning-rate
schedule against its formula and against lerobot's, the optimizer settings read one way, the optimisation
step against the hand-written loop it replaced, resuming, and writes that are complete or absent."""

from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from kuavo_smolvla_ros.atomic import atomic_path, write_json
from kuavo_smolvla_ros.training.common.config import OptimConfig, optim_config
from kuavo_smolvla_ros.training.common.errors import TrainingConfigError, TrainingError
from kuavo_smolvla_ros.training.common.optim import Optimisation, lr_factor

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "training" / "configs"
PACKAGE = ROOT / "kuavo_smolvla_ros" / "training"


def old_factor(step: int, warmup: int, decay: int, peak: float, floor: float) -> float:
    """The schedule as the trainers computed it before the toolkit (``trainer.lr_factor``), written out."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(decay, 1), 1.0)
    low = floor / peak if peak > 0 else 0.0
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))


def scheduled_lrs(scheduler, optimizer, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


STEPS = (0, 1, 9, 10, 11, 60, 109, 110, 150)


@pytest.mark.parametrize(("warmup", "decay"), [(10, 100), (0, 100), (50, 1)])
def test_the_schedule_is_the_one_the_trainers_always_used(warmup, decay):
    peak, floor = 1e-3, 1e-5
    model = torch.nn.Linear(2, 1)
    optim = Optimisation(model, OptimConfig(min_lr=floor), peak, warmup, decay)
    lrs = scheduled_lrs(optim.scheduler, optim.optimizer, max(STEPS) + 1)
    for step in STEPS:
        assert lrs[step] == pytest.approx(peak * old_factor(step, warmup, decay, peak, floor), rel=1e-12, abs=0)
        assert lr_factor(step, warmup, decay, peak, floor) == old_factor(step, warmup, decay, peak, floor)
    assert lr_factor(5, 0, 10, 0.0, 1e-6) == old_factor(5, 0, 10, 0.0, 1e-6)  # a zero peak does not divide


def test_lerobots_cosine_with_warmup_is_another_schedule_so_ours_is_kept():
    """lerobot 0.6.1's CosineDecayWithWarmupSchedulerConfig, on the same numbers, matches ours only without
    warmup: its warmup starts at 1/(warmup+1) and its cosine counts from step 0, not from the warmup's end
    (see training/common/optim.py). Swapping would change every stage's and reflow run's learning rates."""
    from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig

    peak, floor, decay, total = 1e-3, 1e-5, 100, 1000

    def lerobot_lrs(warmup: int) -> list[float]:
        optimizer = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=peak)
        scheduler = CosineDecayWithWarmupSchedulerConfig(num_warmup_steps=warmup, num_decay_steps=decay,
                                                         peak_lr=peak, decay_lr=floor).build(optimizer, total)
        return scheduled_lrs(scheduler, optimizer, max(STEPS) + 1)

    without_warmup = lerobot_lrs(0)
    for step in STEPS:
        assert without_warmup[step] == pytest.approx(peak * old_factor(step, 0, decay, peak, floor), rel=1e-9)
    theirs = lerobot_lrs(10)
    ours = [peak * old_factor(step, 10, decay, peak, floor) for step in range(max(STEPS) + 1)]
    assert theirs[0] == pytest.approx(peak / 11) and ours[0] == pytest.approx(peak / 10)  # warmup start
    assert ours[9] == pytest.approx(peak) and theirs[9] < 0.999 * peak  # ours reaches the peak in warmup
    # the cosine: lerobot's is half-way at step 50, ours at 10 + 50; lerobot's ends at 100, ours at 110
    assert theirs[50] == pytest.approx((peak + floor) / 2) and ours[60] == pytest.approx((peak + floor) / 2)
    assert theirs[100] == pytest.approx(floor) and ours[100] > 1.0001 * floor and ours[110] == pytest.approx(floor)


def test_the_optimisation_step_is_the_loop_it_replaced():
    """Optimisation.step against the sequence both trainers spelled out (finite check, zero_grad, backward,
    clip, step, schedule, TensorBoard scalars): the same weights, bit for bit, and the same logged values."""
    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(8, 3), torch.nn.Linear(8, 3)
    theirs.load_state_dict(ours.state_dict())
    ours.bias.requires_grad_(False)
    theirs.bias.requires_grad_(False)
    config = OptimConfig(betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01, grad_clip_norm=0.05, min_lr=1e-4)
    optim = Optimisation(ours, config, 1e-2, 3, 5)
    trainable = [p for p in theirs.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: old_factor(s, 3, 5, 1e-2, 1e-4))

    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer, expected = Writer(), []
    for step in range(10):
        inputs = torch.randn(4, 8)
        value = optim.step((ours(inputs) ** 2).mean(), step, writer, Path("last"))
        loss = (theirs(inputs) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        expected += [("train/loss", float(loss.detach()), step + 1), ("train/lr", scheduler.get_last_lr()[0], step + 1)]
        assert value == float(loss.detach())
    assert writer.scalars == expected
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters(), strict=True))
    assert optim.lr == scheduler.get_last_lr()[0]

    before = [p.clone() for p in ours.parameters()]
    nan = (ours(torch.randn(4, 8)) * float("nan")).mean()
    with pytest.raises(TrainingError, match=r"^non-finite loss nan at step 10 \(epoch 3\); the last good "
                                            r"checkpoint is last$"):
        optim.step(nan, 10, writer, Path("last"), where=" (epoch 3)")
    with pytest.raises(TrainingError, match="non-finite loss inf at step 11;"):
        optim.step(nan.nan_to_num(0.0), 11, writer, Path("last"), reported=torch.tensor(float("inf")))
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), before, strict=True)), "weights changed"


def test_both_base_configs_read_the_same_optimizer_settings_one_way():
    blocks = {}
    for name in ("smolvla_sequential_base", "reflow_base"):
        cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        blocks[name] = optim_config(cfg)
    assert blocks["smolvla_sequential_base"] == blocks["reflow_base"] == OptimConfig(
        betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-7, grad_clip_norm=1.0, min_lr=1e-6)
    assert optim_config({}) == OptimConfig()  # blocks or keys left out take the defaults
    assert optim_config({"optimizer": {"eps": 1e-6, "betas": None}, "scheduler": None}) == OptimConfig(eps=1e-6)


def test_the_sequential_settings_carry_the_optimizer_block():
    from kuavo_smolvla_ros.training.sequential_config import settings_from

    cfg = yaml.safe_load((CONFIGS / "smolvla_sequential_base.yaml").read_text())
    cfg["optimizer"].update(betas=[0.5, 0.6], weight_decay=0.1)
    cfg["scheduler"]["min_lr"] = 0.0
    assert settings_from(cfg).optim == OptimConfig(betas=(0.5, 0.6), weight_decay=0.1, min_lr=0.0)


@pytest.mark.parametrize(("blocks", "message"), [
    ({"optimizer": {"betas": [0.9]}}, r"optimizer.betas must be two numbers in \[0, 1\), got \[0.9\]"),
    ({"optimizer": {"betas": [0.9, 1.0]}}, "optimizer.betas must be two numbers"),
    ({"optimizer": {"betas": "0.9"}}, "optimizer.betas must be two numbers"),
    ({"optimizer": {"eps": "small"}}, "optimizer.eps must be a number, got 'small'"),
    ({"optimizer": {"weight_decay": -1}}, "optimizer.weight_decay must be >= 0, got -1"),
    ({"optimizer": {"grad_clip_norm": 0}}, "optimizer.grad_clip_norm must be > 0, got 0"),
    ({"optimizer": {"grad_clip_norm": float("nan")}}, "optimizer.grad_clip_norm must be > 0"),
    ({"scheduler": {"min_lr": "low"}}, "scheduler.min_lr must be a number, got 'low'"),
    ({"scheduler": {"min_lr": -1e-6}}, "scheduler.min_lr must be >= 0"),
    ({"optimizer": [0.9, 0.999]}, "optimizer must be a mapping"),
])
def test_unusable_optimizer_settings_are_refused_naming_the_key(blocks, message):
    with pytest.raises(TrainingConfigError, match=message):
        optim_config(blocks)


def test_a_fresh_run_is_seeded_and_a_saved_one_resumes_its_progress(tmp_path):
    from kuavo_smolvla_ros.training.common.checkpoints import STATE_FILE, start_progress, training_state_dir

    fresh = {"step": 0, "history": []}
    progress, state_dir = start_progress(tmp_path / "last", fresh, seed=7)
    drawn = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(3)) and state_dir is None
    assert progress == fresh and progress is not fresh
    saved = tmp_path / "last" / "training_state"
    saved.mkdir(parents=True)
    assert training_state_dir(tmp_path / "last") is None  # a folder without the progress file is no state
    write_json(saved / STATE_FILE, {"step": 12, "history": [1.5]})
    assert start_progress(tmp_path / "last", fresh, seed=7) == ({"step": 12, "history": [1.5]}, saved)


# ------------------------------------------------------------------------------------ atomic writes
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_path_renames_on_success_and_removes_the_temporary_file_on_failure(tmp_path):
    target = tmp_path / "data.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".data.bin.") and f".{os.getpid()}." in tmp.name
        assert not tmp.exists()
        tmp.write_bytes(b"one")
    assert target.read_bytes() == b"one"
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"one" and _leftovers(tmp_path) == []
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second  # unique per call, not only per process
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first" and _leftovers(tmp_path) == []


def test_write_json_and_the_checkpoint_metadata_write_what_they_always_wrote(tmp_path):
    import numpy as np

    from kuavo_smolvla_ros.policy.checkpoint import METADATA_FILE, CheckpointMetadata

    data = {"loss": np.float32(0.5), "steps": [1, 2]}
    write_json(tmp_path / "r.json", data)
    assert (tmp_path / "r.json").read_text() == json.dumps(data, indent=2, default=float) + "\n"
    meta = CheckpointMetadata(instructions=["pick"], extra={"root": tmp_path})
    assert meta.save(tmp_path) == tmp_path / METADATA_FILE
    assert (tmp_path / METADATA_FILE).read_text() == json.dumps(asdict(meta), indent=2, default=str) + "\n"
    assert CheckpointMetadata.load(tmp_path).extra == {"root": str(tmp_path)}
    with pytest.raises(TypeError):
        write_json(tmp_path / "r.json", {"bad": object()})  # float(object()): nothing is written
    assert json.loads((tmp_path / "r.json").read_text())["steps"] == [1, 2] and _leftovers(tmp_path) == []


def test_write_png_saves_a_png_whatever_the_temporary_name_and_nothing_when_interrupted(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from kuavo_smolvla_ros.atomic import write_png

    figure, axes = plt.subplots(figsize=(2, 1))
    axes.plot([0, 1], [1, 0])
    target = tmp_path / "plot.png"
    write_png(figure, target, dpi=50)
    first = target.read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and _leftovers(tmp_path) == []
    real_savefig = Figure.savefig

    def interrupted(self, fname, **kwargs):
        real_savefig(self, fname, **kwargs)  # the temporary file is written, then Ctrl-C lands
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_png(figure, target, dpi=80)
    plt.close(figure)
    assert target.read_bytes() == first and _leftovers(tmp_path) == []


def test_pairs_and_the_memory_cache_are_saved_whole_or_not_at_all(tmp_path, monkeypatch):
    import safetensors.torch

    from kuavo_smolvla_ros.training.memory import MemoryDataset
    from kuavo_smolvla_ros.training.pairs import Pairs

    pairs = Pairs(torch.arange(3), torch.zeros(3, 2, 4), torch.ones(3, 2, 2))
    path = tmp_path / "cache" / "pairs.safetensors"
    pairs.save(path, {"seed": 1})
    assert torch.equal(Pairs.load(path).actions, pairs.actions)

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        Pairs(torch.arange(1), torch.zeros(1, 2, 4), torch.ones(1, 2, 2)).save(path, {"seed": 2})
    assert torch.equal(Pairs.load(path).items, pairs.items) and _leftovers(path.parent) == []

    memory = MemoryDataset(2, ["x"], {"x": torch.arange(2.0)})
    target = tmp_path / "cache" / "items.pt"
    memory.save(target)
    assert torch.equal(MemoryDataset.load(target)[[0, 1]]["x"], torch.arange(2.0))
    monkeypatch.setattr(torch, "save", lambda state, file: (Path(file).write_bytes(b"partial"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        MemoryDataset(1, ["x"], {"x": torch.zeros(1)}).save(target)
    assert len(MemoryDataset.load(target)) == 2 and _leftovers(target.parent) == []


def test_the_training_figure_is_saved_only_when_drawn_whole(tmp_path):
    import matplotlib.pyplot as plt

    from kuavo_smolvla_ros.training.common.plots import two_panels

    with two_panels(tmp_path / "ok.png") as (figure, left, right):
        left.plot([0, 1], [1, 0])
        right.plot([0, 1], [0, 1])
    assert (tmp_path / "ok.png").read_bytes()[:4] == b"\x89PNG" and not plt.fignum_exists(figure.number)
    with pytest.raises(KeyError), two_panels(tmp_path / "bad.png") as (figure, _, _):
        raise KeyError("history")
    assert not (tmp_path / "bad.png").exists() and not plt.fignum_exists(figure.number)


# ------------------------------------------------------------------------------------ structure
def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_reflow_does_not_import_the_stage_trainer_and_the_error_types_are_defined_once():
    for name in ("reflow.py", "reflow_config.py", "reflow_models.py", "pairs.py"):
        assert "kuavo_smolvla_ros.training.trainer" not in _imports(PACKAGE / name), name
    assert not {"torch", "lerobot"} & {m.split(".")[0] for m in _imports(PACKAGE / "common" / "config.py")}
    classes: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    assert classes["TrainingConfigError"] == classes["TrainingError"] == ["common/errors.py"]
    assert all(len(where) == 1 for where in classes.values()), {k: v for k, v in classes.items() if len(v) > 1}


@pytest.mark.parametrize("script", ["train_sequential.py", "train_reflow.py"])
def test_training_help_lists_every_setting_with_its_help(script):
    """``--help`` is made from the config file: every setting, its default and its comment; exit 0."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "training" / script), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == f"usage: python training/{script} [KEY=VALUE ...]"
    assert "Configuration groups" not in result.stdout  # Hydra's own help listed tasks/ as a group
    settings = [i for i, line in enumerate(lines) if line.startswith("  ") and not line.startswith("   ")
                and ("=" in line or line.endswith(":"))]
    assert len(settings) > 25
    undocumented = [lines[i].strip() for i in settings if i + 1 >= len(lines) or not lines[i + 1].startswith(" " * 8)]
    assert not undocumented, f"settings without help text: {undocumented}"
    assert "hydra" not in {lines[i].strip().split(" ")[0].split(".")[0] for i in settings}


def test_training_help_of_a_derived_config_shows_its_values():
    """``--config-name demo_tiny --help``: the base config's settings, explained, with demo_tiny's values."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "training" / "train_sequential.py"), "--config-name",
                             "demo_tiny", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "  stages = all" in lines and "  batch_size = 32" in lines and "  lr_scale = 20.0" in lines
    assert lines[lines.index("  batch_size = 32") + 1].strip() == "global batch (split over torchrun processes)"
    assert "  pretrained_path = ???" in lines  # from the base config


def test_action_chunks_are_read_without_decoding_the_rows_images_and_items_are_lerobots(tmp_path):
    """lerobot's own items (a PNG-storage dataset, a 5-action chunk padded at episode ends, an episode subset),
    through ``training_dataset``'s column-only window queries: equal key by key, in this process, after a pickle
    round trip (a spawned worker's copy) and through a DataLoader worker; and the images of the window's rows are
    not decoded."""
    import numpy as np
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from PIL import PngImagePlugin

    from kuavo_smolvla_ros.contract.profile import load_profile
    from kuavo_smolvla_ros.features import ACTION, OBS_STATE
    from kuavo_smolvla_ros.training.datasets import REPO_ID, ColumnQueries, training_dataset

    vector = {"dtype": "float32", "shape": (16,), "names": [f"j{i}" for i in range(16)]}
    image = {"dtype": "image", "shape": (8, 8, 3), "names": ["height", "width", "channels"]}
    cameras = ["observation.images.head_cam_h", "observation.images.wrist_cam_l"]
    root = tmp_path / "data"
    spec = {OBS_STATE: vector, ACTION: dict(vector)} | dict.fromkeys(cameras, image)
    writer = LeRobotDataset.create(REPO_ID, 10, spec, root=root, robot_type=load_profile().robot_type,
                                   use_videos=False)
    rng = np.random.default_rng(3)
    for frames in (7, 4, 9):
        for _ in range(frames):
            writer.add_frame({OBS_STATE: rng.normal(size=16).astype(np.float32),
                              ACTION: rng.normal(size=16).astype(np.float32), "task": "t"}
                             | {c: rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for c in cameras})
        writer.save_episode()
    writer.finalize()
    deltas = {ACTION: [i / 10 for i in range(5)]}
    ours = training_dataset(root, [0, 2], deltas)
    assert isinstance(ours.reader.hf_dataset, ColumnQueries)
    theirs = LeRobotDataset(REPO_ID, root=root, episodes=[0, 2], video_backend="pyav", delta_timestamps=deltas)
    assert len(ours) == len(theirs) == 16

    def same(a, b):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key

    decoded = []
    original = PngImagePlugin.PngImageFile._open

    def counting(self):
        decoded.append(1)
        return original(self)

    PngImagePlugin.PngImageFile._open = counting
    try:
        mine = [ours[i] for i in range(len(ours))]
        my_decodes = len(decoded)
        decoded.clear()
        reference = [theirs[i] for i in range(len(theirs))]
    finally:
        PngImagePlugin.PngImageFile._open = original
    for a, b in zip(mine, reference, strict=True):
        same(a, b)
    assert bool(mine[6]["action_is_pad"][-1]) and not bool(mine[0]["action_is_pad"].any())  # padded at the end
    assert my_decodes == 2 * len(ours)  # the row's two images, nothing of the window's rows
    assert len(decoded) > 4 * my_decodes  # (lerobot's own query decodes them)
    import pickle

    clone = pickle.loads(pickle.dumps(ours))  # what a spawned DataLoader worker receives
    assert isinstance(clone.reader.hf_dataset, ColumnQueries)
    same(clone[6], reference[6])
    assert len(ours.reader.hf_dataset[ACTION]) == len(ours)
    loader = torch.utils.data.DataLoader(ours, batch_size=16, num_workers=1)
    batch = next(iter(loader))
    reference_batch = torch.utils.data.default_collate(reference)
    for key in (ACTION, "action_is_pad", *cameras):
        assert torch.equal(batch[key], reference_batch[key]), key
