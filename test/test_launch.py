"""launch/policy.launch.py: declared arguments, the one Node it builds, and the parameter overrides.

`launch` and `launch_ros` are not on PyPI, so this test puts small fakes of `launch`, `launch.actions`,
`launch.substitutions`, `launch_ros`, `launch_ros.actions` and `launch_ros.parameter_descriptions` into
`sys.modules` for the duration of each test (monkeypatch restores it). They record constructor arguments
and mimic the real signatures (keyword-only where the real ones are, as read in ros2/launch and
ros2/launch_ros, branch jazzy): DeclareLaunchArgument, LaunchConfiguration (incl. perform), OpaqueFunction
(incl. execute), LaunchDescription, Node, ParameterValue. `ament_index_python` is the real package.

NOT covered here: real launch execution (`ros2 launch`), process spawning, namespaces and remappings as
resolved by launch_ros, the temporary parameter file launch_ros writes from the overrides dict, and the
parsing of the parameter files by rcl. Those need a ROS 2 installation with launch_ros.
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
PACKAGE = "kuavo_smolvla_ros"
ARGUMENT_NAMES = ["checkpoint", "params_file", "device", "dry_run", "use_sim_time", "namespace"]


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


@pytest.fixture()
def launch_file(monkeypatch):
    """policy.launch.py loaded against the fakes; sys.modules is restored afterwards."""
    actions = _module("launch.actions", DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction)
    substitutions = _module("launch.substitutions", LaunchConfiguration=LaunchConfiguration,
                            SubstitutionFailure=SubstitutionFailure)
    launch = _module("launch", LaunchDescription=LaunchDescription, actions=actions, substitutions=substitutions)
    ros_actions = _module("launch_ros.actions", Node=Node)
    descriptions = _module("launch_ros.parameter_descriptions", ParameterValue=ParameterValue)
    launch_ros = _module("launch_ros", actions=ros_actions, parameter_descriptions=descriptions)
    for module in (launch, actions, substitutions, launch_ros, ros_actions, descriptions):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    spec = importlib.util.spec_from_file_location("kuavo_policy_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not registered in sys.modules
    return module


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
                        "dry_run": "", "use_sim_time": "false", "namespace": ""}
    for name, arg in declared.items():
        assert isinstance(arg.description, str) and len(arg.description) > 10, name
    # The arguments come first, then the one function that builds the node.
    assert isinstance(description.entities[-1], OpaqueFunction) and len(description.entities) == 7


@pytest.mark.parametrize(
    ("set_arguments", "overrides"),
    [
        ({}, {}),
        ({"checkpoint": "/x", "dry_run": "true"}, {"checkpoint": "/x", "dry_run": True}),
        ({"use_sim_time": "false"}, {"use_sim_time": False}),
        ({"device": "cuda:1", "dry_run": "False", "use_sim_time": "TRUE"},
         {"device": "cuda:1", "dry_run": False, "use_sim_time": True}),
        ({"checkpoint": "123", "device": "cpu", "namespace": "robot1"}, {"checkpoint": "123", "device": "cpu"}),
    ],
)
def test_one_node_with_only_the_set_arguments_as_typed_overrides(launch_file, params_file, set_arguments,
                                                                 overrides):
    description = launch_file.generate_launch_description()
    entities = _run_setup(description, _configurations(params_file, **set_arguments))
    assert len(entities) == 1 and isinstance(entities[0], Node)
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
    assert node.kwargs["parameters"] == [defaults["params_file"], {"use_sim_time": False}]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("dry_run", "yes", r"dry_run:='yes' is invalid: use true or false"),
        ("use_sim_time", "1", r"use_sim_time:='1' is invalid: use true or false"),
        ("device", "gpu", r"device:='gpu' is invalid: use cpu, cuda or cuda:N"),
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
