"""launch/policy.launch.py and launch/sim.launch.py: declared arguments, the Nodes they build, and the
parameter overrides (sim.launch.py builds the policy node through policy.launch.py).

`launch` and `launch_ros` are not on PyPI, so this test puts small fakes of `launch`, `launch.actions`,
`launch.substitutions`, `launch_ros`, `launch_ros.actions` and `launch_ros.parameter_descriptions` into
`sys.modules` for the duration of each test (monkeypatch restores it). They record constructor arguments
and mimic the real signatures (keyword-only where the real ones are, as read in ros2/launch and
ros2/launch_ros, branch jazzy): DeclareLaunchArgument, LaunchConfiguration (incl. perform), OpaqueFunction
(incl. execute), LaunchDescription, Node, LifecycleNode, ParameterValue. `ament_index_python` is the real
package.

NOT covered here: real launch execution (`ros2 launch`), process spawning, namespaces and remappings as
resolved by launch_ros, LifecycleNode's transition-event subscription and ChangeState handling, the
temporary parameter file launch_ros writes from the overrides dict, and the parsing of the parameter files
by rcl. Those need a ROS 2 installation with launch_ros.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_FILE = ROOT / "launch" / "policy.launch.py"
SIM_LAUNCH_FILE = ROOT / "launch" / "sim.launch.py"
PACKAGE = "kuavo_smolvla_ros"
ARGUMENT_NAMES = ["checkpoint", "params_file", "device", "dry_run", "use_sim_time", "namespace", "robot_profile",
                  "autostart"]
SIM_ARGUMENT_NAMES = [*ARGUMENT_NAMES, "policy", "sim_params_file", "task", "seed", "auto_reset"]


# ---- fakes of launch / launch_ros (only what the launch file uses, real signatures) -----------------------

class SubstitutionFailure(RuntimeError):
    pass


class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities) if initial_entities is not None else []


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        assert default_value is None or isinstance(default_value, str), "a substitution or text"
        assert not kwargs, f"unexpected arguments {kwargs}"
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None, **left_over_kwargs):
        if not callable(function):
            raise TypeError("OpaqueFunction expected a callable for 'function'")
        assert not left_over_kwargs, f"unexpected arguments {left_over_kwargs}"
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class LaunchConfiguration:
    def __init__(self, variable_name, *, default=None):
        self.variable_name, self.default = variable_name, default

    def perform(self, context):
        if self.variable_name not in context.launch_configurations:
            if self.default is None:
                raise SubstitutionFailure(f"launch configuration '{self.variable_name}' does not exist")
            return str(self.default)
        return context.launch_configurations[self.variable_name]


# Keyword arguments Node forwards to ExecuteProcess / ExecuteLocal / Action (the ones a launch file may use).
_EXECUTE_KWARGS = {"output", "emulate_tty", "respawn", "respawn_delay", "respawn_max_retries", "sigterm_timeout",
                   "sigkill_timeout", "prefix", "cwd", "env", "additional_env", "on_exit", "condition", "log_cmd"}


class Node:
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                 remappings=None, ros_arguments=None, arguments=None, **kwargs):
        unknown = set(kwargs) - _EXECUTE_KWARGS
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
        if parameters is not None and not isinstance(parameters, list):
            raise TypeError("'parameters' must be a list")
        self.kwargs = dict(executable=executable, package=package, name=name, namespace=namespace,
                           exec_name=exec_name, parameters=parameters, remappings=remappings,
                           ros_arguments=ros_arguments, arguments=arguments, **kwargs)


class LifecycleNode(Node):
    """launch_ros.actions.LifecycleNode: name and namespace are required; launch_ros >= 0.26.7 (Jazzy, Kilted)
    also takes ``autostart`` (default False: the launch drives no transition)."""

    def __init__(self, *, name, namespace, autostart=False, **kwargs):
        super().__init__(name=name, namespace=namespace, **kwargs)
        self.autostart = autostart


class ParameterValue:
    def __init__(self, value, *, value_type=None):
        self.value, self.value_type = value, value_type


class FakeContext:
    def __init__(self, launch_configurations: dict[str, str]):
        self.launch_configurations = dict(launch_configurations)


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _load_launch_file(monkeypatch, path: Path, module_name: str) -> types.ModuleType:
    """A launch file loaded against the fakes (as launch loads it: by path, not registered in sys.modules)."""
    actions = _module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction)
    substitutions = _module("launch.substitutions", LaunchConfiguration=LaunchConfiguration,
                            SubstitutionFailure=SubstitutionFailure)
    launch = _module("launch", LaunchDescription=LaunchDescription, actions=actions, substitutions=substitutions)
    ros_actions = _module("launch_ros.actions", Node=Node, LifecycleNode=LifecycleNode)
    descriptions = _module("launch_ros.parameter_descriptions", ParameterValue=ParameterValue)
    launch_ros = _module("launch_ros", actions=ros_actions, parameter_descriptions=descriptions)
    for module in (launch, actions, substitutions, launch_ros, ros_actions, descriptions):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not registered in sys.modules
    return module


@pytest.fixture()
def launch_file(monkeypatch):
    """policy.launch.py loaded against the fakes; sys.modules is restored afterwards."""
    return _load_launch_file(monkeypatch, LAUNCH_FILE, "kuavo_policy_launch")


@pytest.fixture()
def sim_launch_file(monkeypatch):
    """sim.launch.py loaded against the fakes (it loads policy.launch.py from its own folder)."""
    return _load_launch_file(monkeypatch, SIM_LAUNCH_FILE, "kuavo_sim_launch")


def _share() -> Path:
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        pytest.fail(f"{PACKAGE} is not on AMENT_PREFIX_PATH: run 'make setup' and 'source env.sh'")


def _configurations(params_file: Path, **set_arguments: str) -> dict[str, str]:
    """Launch configurations as `ros2 launch` fills them: every declared argument, defaults empty."""
    values = dict.fromkeys(ARGUMENT_NAMES, "")
    values["params_file"] = str(params_file)
    values.update(set_arguments)
    return values


def _run_setup(description: LaunchDescription, configurations: dict[str, str]) -> list:
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return opaque.execute(FakeContext(configurations))


@pytest.fixture()
def params_file(tmp_path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("/**:\n  ros__parameters: {}\n")
    return path


def test_declares_all_arguments_with_defaults_and_descriptions(launch_file):
    description = launch_file.generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert list(declared) == ARGUMENT_NAMES
    defaults = {name: arg.default_value for name, arg in declared.items()}
    assert defaults == {"checkpoint": "", "params_file": str(_share() / "config" / "policy.yaml"), "device": "",
                        "dry_run": "", "use_sim_time": "false", "namespace": "", "robot_profile": "",
                        "autostart": "true"}
    for name, arg in declared.items():
        assert isinstance(arg.description, str) and len(arg.description) > 10, name
    # The arguments come first, then the one function that builds the node.
    assert isinstance(description.entities[-1], OpaqueFunction) and len(description.entities) == 9


@pytest.mark.parametrize(
    ("set_arguments", "overrides"),
    [
        ({}, {}),
        ({"checkpoint": "/x", "dry_run": "true"}, {"checkpoint": "/x", "dry_run": True}),
        ({"use_sim_time": "false"}, {"use_sim_time": False}),
        ({"device": "cuda:1", "dry_run": "False", "use_sim_time": "TRUE"},
         {"device": "cuda:1", "dry_run": False, "use_sim_time": True}),
        ({"checkpoint": "123", "device": "cpu", "namespace": "robot1"}, {"checkpoint": "123", "device": "cpu"}),
        ({"robot_profile": "kuavo5"}, {"robot_profile": "kuavo5"}),
        ({"autostart": "true"}, {"autostart": True}),
        ({"autostart": "FALSE", "namespace": "robot1"}, {"autostart": False}),
    ],
)
def test_one_node_with_only_the_set_arguments_as_typed_overrides(launch_file, params_file, set_arguments,
                                                                 overrides):
    description = launch_file.generate_launch_description()
    entities = _run_setup(description, _configurations(params_file, **set_arguments))
    assert len(entities) == 1 and isinstance(entities[0], Node)
    # autostart false: a managed LifecycleNode (unconfigured until a lifecycle manager drives it)
    assert isinstance(entities[0], LifecycleNode) == (overrides.get("autostart") is False)
    node = entities[0].kwargs
    assert node["package"] == PACKAGE and node["executable"] == "policy_node"
    assert node["name"] == "kuavo_smolvla_policy"
    assert node["namespace"] == set_arguments.get("namespace", "")
    assert node["output"] == "screen" and node["emulate_tty"] is True
    assert node["parameters"] == [str(params_file), overrides]
    got = node["parameters"][1]
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in overrides.items()}


def test_with_launch_defaults_only_use_sim_time_is_overridden(launch_file):
    description = launch_file.generate_launch_description()
    defaults = {e.name: e.default_value for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    if not Path(defaults["params_file"]).is_file():
        pytest.skip(f"default params file {defaults['params_file']} not installed yet (config/policy.yaml)")
    (node,) = _run_setup(description, defaults)
    assert node.kwargs["parameters"] == [defaults["params_file"], {"use_sim_time": False, "autostart": True}]
    assert not isinstance(node, LifecycleNode)  # the node configures and activates itself


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("dry_run", "yes", r"dry_run:='yes' is invalid: use true or false"),
        ("use_sim_time", "1", r"use_sim_time:='1' is invalid: use true or false"),
        ("device", "gpu", r"device:='gpu' is invalid: use cpu, cuda or cuda:N"),
        ("autostart", "later", r"autostart:='later' is invalid: use true or false"),
    ],
)
def test_invalid_argument_values_are_rejected_clearly(launch_file, params_file, name, value, message):
    description = launch_file.generate_launch_description()
    with pytest.raises(ValueError, match=message):
        _run_setup(description, _configurations(params_file, **{name: value}))


def test_missing_params_file_is_rejected(launch_file, tmp_path):
    description = launch_file.generate_launch_description()
    with pytest.raises(FileNotFoundError, match=r"params_file:=.*nope\.yaml' is not a file"):
        _run_setup(description, _configurations(tmp_path / "nope.yaml"))


def test_node_overrides_is_a_pure_function(launch_file):
    assert launch_file.node_overrides({}) == {}
    assert launch_file.node_overrides({"checkpoint": " /m ", "device": "cuda", "namespace": "ignored"}) == {
        "checkpoint": "/m", "device": "cuda"}


def test_named_executable_is_installed_where_ros2_run_looks(launch_file):
    # `ros2 run PACKAGE EXE` (and launch_ros) run <package prefix>/lib/PACKAGE/EXE if executable
    # (ros2pkg.api.get_executable_paths).
    executable = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / launch_file.EXECUTABLE
    if not executable.exists():
        pytest.skip(f"{executable} not installed yet (scripts/policy_node is being added; then make setup)")
    assert executable.is_file() and os.access(executable, os.X_OK)


def test_default_params_file_is_installed():
    path = _share() / "config" / "policy.yaml"
    if not path.exists():
        pytest.skip(f"{path} not installed yet (config/policy.yaml is being added; then make setup)")
    assert path.is_file()


def test_node_gets_the_fastdds_profile_unless_one_is_set(launch_file, params_file, monkeypatch):
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    (node,) = _run_setup(launch_file.generate_launch_description(), _configurations(params_file))
    assert node.kwargs["additional_env"] == {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(_share() / "config" / "fastdds_profile.xml")}
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/mine.xml")
    (node,) = _run_setup(launch_file.generate_launch_description(), _configurations(params_file))
    assert node.kwargs["additional_env"] == {}


# ---- sim.launch.py --------------------------------------------------------------------------------------

@pytest.fixture()
def sim_params_file(tmp_path) -> Path:
    path = tmp_path / "sim.yaml"
    path.write_text("/**:\n  ros__parameters: {}\n")
    return path


def _sim_configurations(params_file: Path, sim_params_file: Path, **set_arguments: str) -> dict[str, str]:
    """As `ros2 launch` fills them: the policy's as in _configurations, then the simulator's (policy true)."""
    values = _configurations(params_file, **dict.fromkeys(SIM_ARGUMENT_NAMES[len(ARGUMENT_NAMES):], ""))
    values.update({"policy": "true", "sim_params_file": str(sim_params_file), **set_arguments})
    return values


def test_sim_declares_the_policy_arguments_then_its_own(sim_launch_file, launch_file):
    description = sim_launch_file.generate_launch_description()
    declared = {e.name: e for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert list(declared) == SIM_ARGUMENT_NAMES
    policy_declared = {e.name: e for e in launch_file.generate_launch_description().entities
                       if isinstance(e, DeclareLaunchArgument)}
    for name, arg in policy_declared.items():  # the same declarations as policy.launch.py's
        assert (declared[name].default_value, declared[name].description) == (arg.default_value, arg.description)
    defaults = {name: declared[name].default_value for name in SIM_ARGUMENT_NAMES[len(ARGUMENT_NAMES):]}
    assert defaults == {"policy": "true", "sim_params_file": str(_share() / "config" / "sim.yaml"), "task": "",
                        "seed": "", "auto_reset": ""}
    for name, arg in declared.items():
        assert isinstance(arg.description, str) and len(arg.description) > 10, name
    assert isinstance(description.entities[-1], OpaqueFunction) and len(description.entities) == 14


@pytest.mark.parametrize(
    ("set_arguments", "sim_overrides"),
    [
        ({}, {}),
        ({"checkpoint": "/ck", "task": "weighing", "seed": "42", "auto_reset": "TRUE", "namespace": "robot1"},
         {"task": "weighing", "seed": 42, "auto_reset": True}),
        ({"use_sim_time": "true", "dry_run": "true", "device": "cuda:0"}, {"publish_clock": True}),
        ({"use_sim_time": "false", "auto_reset": "false"}, {"auto_reset": False, "publish_clock": False}),
        ({"robot_profile": "leju_sim"}, {"robot_profile": "leju_sim"}),
        ({"autostart": "false"}, {}),
    ],
)
def test_sim_builds_the_simulator_and_the_policy_node_as_policy_launch_does(
        sim_launch_file, launch_file, params_file, sim_params_file, set_arguments, sim_overrides):
    configurations = _sim_configurations(params_file, sim_params_file, **set_arguments)
    entities = _run_setup(sim_launch_file.generate_launch_description(), configurations)
    assert len(entities) == 2 and all(isinstance(e, Node) for e in entities)
    simulator, policy = (e.kwargs for e in entities)
    assert (simulator["package"], simulator["executable"], simulator["name"]) == (PACKAGE, "sim_robot", "kuavo_sim")
    assert simulator["namespace"] == set_arguments.get("namespace", "")
    assert simulator["output"] == "screen" and simulator["emulate_tty"] is True
    assert simulator["parameters"] == [str(sim_params_file), sim_overrides]
    got = simulator["parameters"][1]
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in sim_overrides.items()}
    (expected,) = _run_setup(launch_file.generate_launch_description(), configurations)
    assert policy == expected.kwargs and type(entities[1]) is type(expected)


def test_sim_without_the_policy_starts_only_the_simulator(sim_launch_file, sim_params_file, tmp_path):
    # policy:=false needs no checkpoint and ignores the policy's params file (even a missing one).
    configurations = _sim_configurations(tmp_path / "absent.yaml", sim_params_file, policy="false")
    (simulator,) = _run_setup(sim_launch_file.generate_launch_description(), configurations)
    assert simulator.kwargs["executable"] == "sim_robot"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("policy", "no", r"policy:='no' is invalid: use true or false"),
        ("auto_reset", "1", r"auto_reset:='1' is invalid: use true or false"),
        ("seed", "-3", r"seed:='-3' is invalid: use an integer >= 0"),
        ("use_sim_time", "yes", r"use_sim_time:='yes' is invalid: use true or false"),
    ],
)
def test_sim_invalid_argument_values_are_rejected_clearly(sim_launch_file, params_file, sim_params_file, name, value,
                                                          message):
    with pytest.raises(ValueError, match=message):
        _run_setup(sim_launch_file.generate_launch_description(),
                   _sim_configurations(params_file, sim_params_file, **{name: value}))


def test_sim_missing_params_file_is_rejected(sim_launch_file, params_file, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sim_params_file:=.*nope\.yaml' is not a file"):
        _run_setup(sim_launch_file.generate_launch_description(),
                   _sim_configurations(params_file, tmp_path / "nope.yaml"))


def test_sim_executable_and_params_file_are_installed(sim_launch_file):
    executable = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / sim_launch_file.EXECUTABLE
    config = _share() / "config" / "sim.yaml"
    if not executable.exists() or not config.exists():
        pytest.skip("scripts/sim_robot and config/sim.yaml not installed yet (make setup)")
    assert executable.is_file() and os.access(executable, os.X_OK) and config.is_file()
