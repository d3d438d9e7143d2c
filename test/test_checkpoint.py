"""Checkpoint discovery and the clear errors for broken checkpoints."""

import json
import shutil

import pytest

from kuavo_smolvla_ros.policy.checkpoint import (
    CheckpointError,
    CheckpointMetadata,
    inspect_checkpoint,
    main,
)
from kuavo_smolvla_ros.policy.runtime import PolicyRuntime


def _edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_inspect_reports_the_kuavo_layout(tiny_checkpoint):
    info = inspect_checkpoint(tiny_checkpoint)
    assert info.path == tiny_checkpoint.resolve()
    assert info.cameras == ["head_cam_h", "wrist_cam_l", "wrist_cam_r"]
    assert info.image_shapes["head_cam_h"] == (3, 64, 64)
    assert (info.chunk_size, info.n_action_steps, info.num_steps) == (50, 8, 10)
    assert info.vlm_path == (tiny_checkpoint / "vlm").resolve()
    assert info.metadata.robot_type == "kuavo4pro" and info.action_mode == "absolute"
    assert len(info.metadata.instructions) == 4


def test_the_builder_writes_a_self_contained_checkpoint(tiny_checkpoint):
    """kuavo-smolvla-tiny ships its VLM folder and names it by its content, never by a path of this machine."""
    from kuavo_smolvla_ros.policy.checkpoint import SHIPPED_VLM_PREFIX, cached_vlm, vlm_content_id

    name = json.loads((tiny_checkpoint / "config.json").read_text())["vlm_model_name"]
    assert name == vlm_content_id(tiny_checkpoint / "vlm")[0] and name.startswith(SHIPPED_VLM_PREFIX)
    steps = json.loads((tiny_checkpoint / "policy_preprocessor.json").read_text())["steps"]
    assert [s["config"]["tokenizer_name"] for s in steps if s["registry_name"] == "tokenizer_processor"] == [name]
    for file in ("config.json", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert str(tiny_checkpoint) not in (tiny_checkpoint / file).read_text(), file
    info = inspect_checkpoint(tiny_checkpoint)
    assert (info.vlm_name, info.vlm_source, info.vlm_hub_id) == (name, "shipped", name)
    shipped = (tiny_checkpoint / "vlm" / "tokenizer.json").read_bytes()
    assert (cached_vlm(name) / "tokenizer.json").read_bytes() == shipped  # for lerobot's own loader


def test_lerobot_train_layouts_are_found(checkpoint_copy, tmp_path):
    run = tmp_path / "run"
    step = run / "checkpoints" / "005000"
    shutil.copytree(checkpoint_copy, step / "pretrained_model")
    (run / "checkpoints" / "last").symlink_to("005000")
    assert inspect_checkpoint(step).path == (step / "pretrained_model").resolve()
    assert inspect_checkpoint(run).path.name == "pretrained_model"


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "policy_preprocessor.json",
                                  "policy_postprocessor_step_0_unnormalizer_processor.safetensors"])
def test_missing_file_is_named(checkpoint_copy, name):
    (checkpoint_copy / name).unlink()
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        inspect_checkpoint(checkpoint_copy)


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        inspect_checkpoint(tmp_path / "nowhere")


def test_wrong_policy_type(checkpoint_copy):
    _edit_config(checkpoint_copy, type="act")
    with pytest.raises(CheckpointError, match="policy type is 'act', expected 'smolvla'"):
        inspect_checkpoint(checkpoint_copy)


def test_dimensions_must_fit_the_layout(checkpoint_copy):
    config = json.loads((checkpoint_copy / "config.json").read_text())
    config["output_features"]["action"]["shape"] = [14]
    (checkpoint_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"action \(14,\) do not fit the Kuavo layout"):
        inspect_checkpoint(checkpoint_copy)


def test_corrupt_json_and_weights(checkpoint_copy):
    (checkpoint_copy / "model.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        inspect_checkpoint(checkpoint_copy)
    (checkpoint_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        inspect_checkpoint(checkpoint_copy)


def test_metadata_with_another_layout_is_rejected(checkpoint_copy):
    meta = CheckpointMetadata.load(checkpoint_copy)
    meta.joint_names = meta.joint_names[::-1]
    meta.save(checkpoint_copy)
    with pytest.raises(CheckpointError, match="joint_names do not match"):
        inspect_checkpoint(checkpoint_copy)


def test_moved_checkpoint_finds_its_own_vlm_folder_or_needs_an_override(tiny_checkpoint, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_checkpoint, moved)
    _edit_config(moved, vlm_model_name=str(tmp_path / "old_place" / "vlm"))
    # The VLM folder travelled inside the checkpoint: found without help.
    assert inspect_checkpoint(moved).vlm_path == (moved / "vlm").resolve()
    shutil.move(str(moved / "vlm"), str(tmp_path / "elsewhere"))
    with pytest.raises(CheckpointError, match=r"'.*old_place/vlm' cannot be found locally.*pass vlm_path"):
        inspect_checkpoint(moved)
    assert inspect_checkpoint(moved, vlm_path=tmp_path / "elsewhere").vlm_path == (tmp_path / "elsewhere").resolve()
    with pytest.raises(CheckpointError, match="vlm_path override"):
        inspect_checkpoint(moved, vlm_path=tmp_path / "nope")


def test_hub_id_is_never_downloaded(checkpoint_copy):
    _edit_config(checkpoint_copy, vlm_model_name="HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
    with pytest.raises(CheckpointError, match="'HuggingFaceTB/SmolVLM2-500M-Video-Instruct' cannot be found"):
        inspect_checkpoint(checkpoint_copy)


def test_weights_missing_from_the_file_fail_loudly(tiny_checkpoint, checkpoint_copy):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(checkpoint_copy / "model.safetensors"))
    dropped = sorted(k for k in tensors if "action_out_proj" in k)
    assert dropped
    for key in dropped:
        del tensors[key]
    save_file(tensors, str(checkpoint_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"{len(dropped)} missing tensors \(e\.g\. .*action_out_proj"):
        PolicyRuntime.open(checkpoint_copy)


def test_inspect_command_line(tiny_checkpoint, checkpoint_copy, capsys):
    assert main([str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "chunk_size   50  n_action_steps 8  num_steps 10" in out
    assert "head_cam_h (3, 64, 64)" in out
    _edit_config(checkpoint_copy, type="pi0")
    assert main([str(checkpoint_copy)]) == 1
    assert "policy type is 'pi0'" in capsys.readouterr().err


def test_every_checkpoint_file_is_readable_by_the_robots_user(tiny_checkpoint):
    """safetensors writes 0600; a checkpoint copied with ``rsync -a`` to a robot whose node runs as another
    user must stay readable: every file gets what the umask allows for new files (0644 under umask 022)."""
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    files = [p for p in tiny_checkpoint.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(0o666 & ~mask) for p in files}
