"""The nodes' parameter tables: one spelling each, from which declarations, validation, --help, the
unknown-parameter warnings, the start-up safety line and config/*.yaml are made."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from processes import wait_until

from kuavo_smolvla_ros.ros import param_table, params, sim_params

ROOT = Path(__file__).resolve().parent.parent
TABLES = [(params.NodeSettings, "policy_node", "kuavo_smolvla_ros.ros.policy_node", "policy.yaml",
           params.NODE_NAME),
          (sim_params.SimSettings, "sim_robot", "kuavo_smolvla_ros.ros.sim_node", "sim.yaml", sim_params.NODE_NAME)]


@pytest.mark.parametrize(("settings", "_executable", "_module", "yaml_name", "node_name"), TABLES)
def test_the_shipped_yaml_is_the_table_rendered(settings, _executable, _module, yaml_name, node_name):
    text = (ROOT / "config" / yaml_name).read_text()
    assert text == param_table.render_yaml(settings, node_name, {"policy.yaml": params.YAML_HEADER,
                                                                  "sim.yaml": sim_params.YAML_HEADER}[yaml_name]), (
        "config/*.yaml drifted from the parameter table: run python -m kuavo_smolvla_ros.ros.param_table")
    values = yaml.safe_load(text)[f"/**/{node_name}"]["ros__parameters"]
    table = param_table.table(settings)
    assert values == {spec.name: list(spec.default) if spec.kind is tuple else spec.default for spec in table}
    lines = text.splitlines()
    for spec in table:  # above its value, every row's description, range or choices, and dynamic flag
        index = next(i for i, line in enumerate(lines) if line.startswith(f"    {spec.name}: "))
        comment = []
        while lines[index - 1 - len(comment)].startswith("    #"):
            comment.append(lines[index - 1 - len(comment)].lstrip(" #"))
        words = " ".join(reversed(comment))
        assert " ".join(spec.description.split()) in words, spec.name
        assert ("dynamic (ros2 param set)" in words) == spec.dynamic, spec.name
        if spec.range is not None or spec.choices is not None:
            assert f"[{spec.allowed()}]" in words, spec.name


def test_the_rewriter_reports_no_drift():
    assert param_table.main(["--check"]) == 0


@pytest.mark.parametrize(("settings", "executable", "module", "_yaml", "_node"), TABLES)
def test_help_prints_every_parameter_and_exits_0(settings, executable, module, _yaml, _node):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {executable} ")
    for spec in param_table.table(settings):
        assert f"\n  {spec.name} (" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("control_rate_hz", 20, 20.0), ("control_rate_hz", 0.0, 0.0), ("dry_run", True, True),
    ("cameras", [], ()), ("cameras", None, ()), ("cameras", ["a", "b"], ("a", "b")),
    ("stale_behaviour", "hold", "hold"), ("checkpoint", 123, "123"), ("seed", -1, -1),
])
def test_values_of_the_right_type_and_range_pass(name, value, expected):
    spec = next(s for s in param_table.table(params.NodeSettings) if s.name == name)
    assert spec.check(value) == expected and type(spec.check(value)) is type(expected)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("control_rate_hz", 5000.0, "parameter control_rate_hz: 5000.0 is out of range; allowed: 0.0..200.0"),
    ("control_rate_hz", float("inf"), "parameter control_rate_hz: inf is not a double; allowed: 0.0..200.0"),
    ("control_rate_hz", "fast", "parameter control_rate_hz: 'fast' is not a double"),
    ("dry_run", 1, "parameter dry_run: 1 is not a bool; allowed: true or false"),
    ("seed", 1.5, "parameter seed: 1.5 is not an integer; allowed: -1..2147483647"),
    ("seed", True, "parameter seed: True is not an integer"),
    ("stale_behaviour", "later", "parameter stale_behaviour: 'later' is not allowed; allowed: one of finish, hold"),
    ("cameras", [1, 2], "parameter cameras: [1, 2] is not a string array"),
])
def test_bad_values_are_one_line_naming_parameter_value_and_range(name, value, message):
    spec = next(s for s in param_table.table(params.NodeSettings) if s.name == name)
    with pytest.raises(ValueError) as raised:
        spec.check(value)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_unknown_names_are_warned_with_the_closest_known_one():
    known = [spec.name for spec in param_table.table(params.NodeSettings)]
    warnings = param_table.unknown_warnings(["dry_runn", "dry_run", "use_sim_time", "qos_overrides./x.depth",
                                             "zzz", "control_rate"], known)
    assert warnings == [
        "unknown parameter 'dry_runn' (params file or command line) is ignored: did you mean 'dry_run'?",
        "unknown parameter 'zzz' (params file or command line) is ignored: see --help for the parameters",
        "unknown parameter 'control_rate' (params file or command line) is ignored: did you mean 'control_rate_hz'?",
    ]


def test_help_does_not_hide_behind_ros_args():
    assert param_table.wants_help(["--help"]) and param_table.wants_help(["-h", "--ros-args"])
    assert not param_table.wants_help(["--ros-args", "-p", "x:=--help"])


def _start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def test_sim_robot_warns_about_misspelled_parameters_from_the_file_and_the_command_line(tmp_path):
    params_file = tmp_path / "sim.yaml"
    params_file.write_text(yaml.safe_dump({"/**/kuavo_sim": {"ros__parameters": {"auto_resett": True,
                                                                                  "seed": 7}}}))
    log = tmp_path / "sim.log"
    process = _start([sys.executable, "-m", "kuavo_smolvla_ros.ros.sim_node", "--ros-args", "--params-file",
                      str(params_file), "-p", "jpeg_qualty:=50"], log)
    try:
        assert wait_until(lambda: "simulating task" in log.read_text() or process.poll() is not None, 60), (
            log.read_text()[-2000:])
    finally:
        code = _stop(process)
    text = log.read_text()
    assert code == 0 and "[ERROR]" not in text and "Traceback" not in text, text[-2000:]  # Ctrl-C is quiet
    unknown = "unknown parameter {!r} (params file or command line) is ignored: did you mean {!r}?"
    assert unknown.format("auto_resett", "auto_reset") in text
    assert unknown.format("jpeg_qualty", "jpeg_quality") in text
    assert "simulating task 1 (moving_grasp), seed 7" in text


def test_a_misspelled_safety_parameter_stops_the_node_before_anything_loads():
    """``dry_runn:=true`` ignored would leave dry_run false and the robot driven: the node refuses to start."""
    result = subprocess.run([sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args",
                             "-p", "checkpoint:=/nonexistent/ck", "-p", "dry_runn:=true"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith(
        "cannot start: unknown parameter 'dry_runn' looks like the safety parameter 'dry_run': ignored, dry_run "
        "would stay false; spell it dry_run"), lines
    assert "/nonexistent/ck" not in result.stderr  # refused before the checkpoint is looked at


def test_only_names_close_to_a_safety_parameter_stop_the_node():
    specs = param_table.table(params.NodeSettings)
    assert param_table.mistyped_safety_parameter(["status_rate", "zzz", "use_sim_time", "dry_run"], specs) is None
    assert "'control_rate_hz'" in param_table.mistyped_safety_parameter(["control_rate"], specs)
    assert "'max_joint_velocity'" in param_table.mistyped_safety_parameter(["max_joint_velocty"], specs)


@pytest.mark.ros
def test_a_chunk_10_checkpoint_starts_with_its_path_alone_and_logs_the_safety_settings(checkpoint_copy, tmp_path):
    """Only ``checkpoint:=``: chunk size, actions per chunk, steps, cameras and image size are the checkpoint's,
    and the start-up log names every setting that matters for safety."""
    config = json.loads((checkpoint_copy / "config.json").read_text())
    (checkpoint_copy / "config.json").write_text(json.dumps({**config, "chunk_size": 10, "n_action_steps": 6}))
    log = tmp_path / "policy.log"
    process = _start([sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args",
                      "-p", f"checkpoint:={checkpoint_copy}"], log)
    try:
        assert wait_until(lambda: "ready: /kuavo_smolvla/action at 10 Hz" in log.read_text()
                          or process.poll() is not None, 180), (
            log.read_text()[-3000:])
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        code = _stop(process)
    line = next(line for line in log.read_text().splitlines() if "safety settings:" in line)
    for setting in (f"checkpoint={checkpoint_copy}", "device=cpu", "num_steps=10", "control_rate_hz=10.0",
                    "robot_profile=kuavo4pro", "max_input_age_s=0.0", "stale_behaviour=finish", "dry_run=false",
                    "publish_arm_command=true", "publish_gripper_command=true", "max_joint_velocity=1.0",
                    "max_gripper_velocity=2.0", "ramp_in_s=1.0", "chunk_size=10", "n_action_steps=6",
                    "namespace=/"):
        assert setting in line, (setting, line)
    assert "cameras head_cam_h 64x64, wrist_cam_l 64x64, wrist_cam_r 64x64" in log.read_text()
    assert code == 0, log.read_text()[-2000:]


N = "kuavo_smolvla_policy"


@pytest.mark.parametrize(("key", "name", "matches"), [
    ("/**", f"/robot1/{N}", True), ("**", f"/{N}", True), (N, f"/{N}", True), (N, f"/r1/{N}", False),
    (f"/r1/{N}", f"/r1/{N}", True), (f"r1/{N}", f"/r1/{N}", True), (f"/*/{N}", f"/r1/{N}", True),
    (f"/*/{N}", f"/{N}", False), (f"/**/{N}", f"/{N}", True), (f"/**/{N}", f"/a/b/{N}", True),
    ("kuavo_smolvla_polcy", f"/{N}", False), ("/kuavo_*", f"/{N}", True), (f"/r2/{N}", f"/r1/{N}", False),
])
def test_params_file_sections_match_nodes_as_rcl_matches_them(key, name, matches):
    assert param_table.section_matches(key, name) is matches


def test_a_params_file_for_no_node_warns_and_stops_when_it_sets_a_safety_parameter(tmp_path):
    specs = param_table.table(params.NodeSettings)
    node = "/kuavo_smolvla_policy"
    shared = tmp_path / "shared.yaml"
    shared.write_text("other_node:\n  ros__parameters:\n    rate: 3\n")
    assert param_table.unmatched_params_file(str(shared), node, specs) == (
        False, f"--params-file {shared}: no section for this node '{node}' (sections: 'other_node'): its parameters "
               "are not used")
    typo = tmp_path / "typo.yaml"
    typo.write_text("kuavo_smolvla_polcy:\n  ros__parameters:\n    dry_run: true\n")
    fatal, message = param_table.unmatched_params_file(str(typo), node, specs)
    assert fatal and message.endswith("so dry_run would stay at the default; name the section "
                                      "'kuavo_smolvla_policy', '/kuavo_smolvla_policy' or '/**'")
    assert param_table.unmatched_params_file(str(ROOT / "config" / "policy.yaml"), "/r1/kuavo_smolvla_policy",
                                             specs) is None


@pytest.mark.parametrize(("text", "problem"), [
    ("hi\n", "not a ROS 2 parameters file"), ("", "not a ROS 2 parameters file"), ("a: [1\n", "not YAML"),
    ("kuavo_smolvla_policy:\n  dry_run: true\n", "section 'kuavo_smolvla_policy' has no 'ros__parameters:' mapping"),
])
def test_a_file_that_is_no_parameters_file_is_named(text, problem):
    assert param_table.params_file_problem(text).startswith(problem)
    assert param_table.params_file_problem("/**:\n  ros__parameters: {dry_run: true}\n") is None


@pytest.mark.parametrize(("text", "ending"), [
    ("kuavo_smolvla_polcy:\n  ros__parameters:\n    dry_run: true\n",
     "so dry_run would stay at the default; name the section 'kuavo_smolvla_policy', '/kuavo_smolvla_policy' or '/**'"),
    ("hi\n", "not a ROS 2 parameters file (expected '<node name>: {ros__parameters: {name: value}}' or '/**:' for "
             "every node)"),
])
def test_a_params_file_that_would_be_ignored_stops_the_node_before_anything_loads(tmp_path, text, ending):
    """A misspelled node name in a params file that sets dry_run would leave dry_run false and the robot driven
    (rcl starts the node without a word): one line, exit 2, before the checkpoint is looked at."""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "kuavo_smolvla_ros.ros.policy_node", "--ros-args",
                             "-p", "checkpoint:=/nonexistent/ck", "--params-file", str(path)],
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, lines
    assert len(lines) == 1 and "cannot start: --params-file " in lines[0] and lines[0].endswith(ending), lines
    assert "/nonexistent/ck" not in result.stderr
