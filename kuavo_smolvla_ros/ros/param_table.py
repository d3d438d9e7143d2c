"""One declarative parameter table per node, and everything made from it.

A node's settings class is a dataclass whose fields are declared with :func:`param`: name, type (from the
default), default, description, range or choices, and whether ``ros2 param set`` may change it. From that one
table come the ROS declarations (``ParameterDescriptor`` with description, ranges, ``read_only``), the
validation of every value at start (one line naming parameter, value and allowed range: exit 2) and at run
time (the set-parameters callback), the warning for an unknown parameter (with the closest known name), the
``--help`` text and the documented YAML (``config/policy.yaml``, ``config/sim.yaml``; ``python -m
kuavo_smolvla_ros.ros.param_table`` rewrites them, and a test checks that they match). This is the idea of
PickNik's ``generate_parameter_library`` (not installable here) in plain Python; nothing is spelled twice.
"""

from __future__ import annotations

import difflib
import itertools
import math
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

#: The settings dataclass field metadata key holding a :class:`Spec`.
_KEY = "kuavo_parameter"
#: Parameters every rclpy node declares itself (and params files often set); never "unknown".
BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")
#: Prefixes of parameters the ROS middleware reads (QoS overrides in a params file); never "unknown".
BUILTIN_PREFIXES = ("qos_overrides.",)
_TYPE_NAMES = {bool: "bool", int: "integer", float: "double", str: "string", tuple: "string array"}


@dataclass(frozen=True)
class Spec:
    """One parameter of a node's table."""

    name: str
    default: Any
    description: str
    #: Inclusive (low, high) for numbers.
    range: tuple[float, float] | tuple[int, int] | None = None
    #: Allowed values for a string.
    choices: tuple[str, ...] | None = None
    #: True: ``ros2 param set`` applies it to the running node; False: read-only.
    dynamic: bool = False
    #: Printed in the start-up log's line of safety-relevant settings.
    safety: bool = False

    @property
    def kind(self) -> type:
        """The Python type of the value: bool, int, float, str or tuple (of str)."""
        return type(self.default) if not isinstance(self.default, tuple) else tuple

    def allowed(self) -> str:
        """What values are allowed, in words (``0.0..200.0``, ``one of finish, hold``, ``an integer``)."""
        if self.range is not None:
            return f"{self.range[0]}..{self.range[1]}"
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        return {bool: "true or false", tuple: "a list of strings"}.get(self.kind, f"a {_TYPE_NAMES[self.kind]}")

    def check(self, value: Any) -> Any:
        """``value`` converted to this parameter's type (an integer for a double is accepted; a ROS string
        array may arrive as a list), or ``ValueError``: one line naming the parameter, the value and what is
        allowed."""
        kind = self.kind
        if kind is tuple:
            if value is None:  # an empty YAML list ([]) arrives unset: rcl cannot tell its element type
                return ()
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
        elif kind is str and isinstance(value, int) and not isinstance(value, bool):
            return self._in_range(str(value))  # `-p task:=1` arrives as an integer
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            value = float(value)
            if math.isfinite(value):
                return self._in_range(value)
        elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return self._in_range(value)
        raise self.error(value, f"is not {'an' if kind is int else 'a'} {_TYPE_NAMES[kind]}")

    def _in_range(self, value: Any) -> Any:
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise self.error(value, "is out of range")
        if self.choices is not None and value not in self.choices:
            raise self.error(value, "is not allowed")
        return value

    def error(self, value: Any, what: str) -> ValueError:
        return ValueError(f"parameter {self.name}: {value!r} {what}; allowed: {self.allowed()} ({self.description})")


def param(default: Any, description: str, *, range: tuple | None = None, choices: tuple[str, ...] | None = None,
          dynamic: bool = False, safety: bool = False) -> Any:
    """A settings dataclass field that is one row of the node's parameter table (the name is the field's)."""
    spec = {"default": default, "description": description, "range": range, "choices": choices,
            "dynamic": dynamic, "safety": safety}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata={_KEY: spec})
    return field(default=default, metadata={_KEY: spec})


def table(settings_class: type) -> list[Spec]:
    """The rows of ``settings_class``'s parameter table, in declaration order."""
    rows = []
    for item in fields(settings_class):
        if _KEY in item.metadata:
            rows.append(Spec(item.name, **item.metadata[_KEY]))
        elif item.default is MISSING and item.default_factory is MISSING:
            raise TypeError(f"{settings_class.__name__}.{item.name} is not a parameter and has no default")
    return rows


# ----------------------------------------------------------------------------------------------- rclpy
def descriptor(spec: Spec):
    """The ``ParameterDescriptor`` of ``spec``: description (with what is allowed), range, read-only flag."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    constraints = f"allowed: {spec.allowed()}"
    result = ParameterDescriptor(name=spec.name, description=spec.description, read_only=not spec.dynamic,
                                 additional_constraints=constraints)
    if spec.range is not None:
        low, high = spec.range
        if spec.kind is float:
            result.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        else:
            result.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    if spec.kind is tuple:
        result.type = ParameterType.PARAMETER_STRING_ARRAY
    return result


def overrides(node) -> dict[str, Any]:
    """The parameter values given to ``node`` from outside (params files matching it, ``-p`` on the command
    line, ``parameter_overrides``). rclpy keeps them in ``Node._parameter_overrides`` and offers no public
    accessor; every distribution since Foxy has it."""
    return {name: parameter.value for name, parameter in getattr(node, "_parameter_overrides", {}).items()}


def declare(node, settings_class: type):
    """Declare every parameter of ``settings_class``'s table on ``node``, each value checked by the table
    (``ValueError``, one line, for a wrong type or a value outside the range), and return the settings.
    Unknown parameters given to the node are logged as warnings naming the closest known parameter."""
    from rclpy.parameter import Parameter

    given = overrides(node)
    refused = mistyped_safety_parameter(given, table(settings_class))
    if refused:
        raise ValueError(refused)
    for path in params_files(sys.argv[sys.argv.index("--ros-args"):] if "--ros-args" in sys.argv else []):
        unmatched = unmatched_params_file(path, node.get_fully_qualified_name(), table(settings_class))
        if unmatched and unmatched[0]:
            raise ValueError(unmatched[1])
        if unmatched:
            node.get_logger().warning(unmatched[1])
    values = {}
    for spec in table(settings_class):
        value = spec.check(given[spec.name]) if spec.name in given else spec.default
        initial = (list(value) or Parameter.Type.STRING_ARRAY) if spec.kind is tuple else value
        declared = node.declare_parameter(spec.name, initial, descriptor(spec), ignore_override=True).value
        values[spec.name] = tuple(declared or ()) if spec.kind is tuple else declared
    for warning in unknown_warnings(given, [spec.name for spec in table(settings_class)]):
        node.get_logger().warning(warning)
    return settings_class(**values)


def unknown_warnings(given: Iterable[str], known: Iterable[str]) -> list[str]:
    """One warning per name in ``given`` that is no parameter of the node, with the closest known name."""
    known = [*known, *BUILTIN_PARAMETERS]
    result = []
    for name in given:
        if name in known or name.startswith(BUILTIN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "see --help for the parameters"
        result.append(f"unknown parameter {name!r} (params file or command line) is ignored: {hint}")
    return result


def mistyped_safety_parameter(given: Iterable[str], specs: Iterable[Spec]) -> str | None:
    """Why the node must not start when a name in ``given`` is no parameter but close to a safety parameter
    (``dry_runn`` for ``dry_run``): ignored, it would leave that parameter at its default (the robot driven).
    None when there is no such name."""
    specs = list(specs)
    known = [spec.name for spec in specs] + list(BUILTIN_PARAMETERS)
    safety = {spec.name: spec for spec in specs if spec.safety}
    for name in given:
        if name in known or name.startswith(BUILTIN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close and close[0] in safety:
            spec = safety[close[0]]
            return (f"unknown parameter {name!r} looks like the safety parameter {spec.name!r}: ignored, "
                    f"{spec.name} would stay {_yaml_value(spec.default)}; spell it {spec.name}")
    return None


def params_files(argv: Iterable[str]) -> list[str]:
    """The ``--params-file`` values among ``argv``'s ROS arguments, in order."""
    return [value for flag, value in itertools.pairwise(argv) if flag == "--params-file"]


def params_file_problem(text: str) -> str | None:
    """Why ``text`` is not a ROS 2 parameters file (``<node name or pattern>: {ros__parameters: {...}}`` at the
    top), or None. rcl starts a node on such a file without a word; its settings would be lost."""
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return f"not YAML ({' '.join(str(err).split())[:120]})"
    if not isinstance(content, Mapping) or not content:
        return "not a ROS 2 parameters file (expected '<node name>: {ros__parameters: {name: value}}' or '/**:' for " \
               "every node)"
    for key, section in content.items():
        if not isinstance(section, Mapping) or not isinstance(section.get("ros__parameters"), Mapping):
            return f"section {key!r} has no 'ros__parameters:' mapping (expected '{key}: {{ros__parameters: " \
                   "{name: value}}')"
    return None


def section_matches(key: str, node_name: str) -> bool:
    """Whether the params-file section ``key`` applies to the node whose fully qualified name is
    ``node_name`` (``/ns/name``), as rcl matches them: a name without a leading slash is absolute, ``*`` is
    one name token, ``**`` any number of them (``/**``: every node). Source: ROS 2 design, "ROS 2 parameters
    YAML files" / rcl_yaml_param_parser."""
    import re

    pattern = key if key.startswith("/") else "/" + key
    tokens = []
    for token in pattern.strip("/").split("/"):
        tokens.append({"**": "(?:/[^/]+)*", "*": "/[^/]+"}.get(token) or "/" + re.escape(token).replace(r"\*", "[^/]*"))
    return re.fullmatch("".join(tokens), node_name) is not None


def unmatched_params_file(path: str, node_name: str, specs: Iterable[Spec]) -> tuple[bool, str] | None:
    """(fatal, message) when the params file at ``path`` has no section for the node ``node_name`` (its
    parameters would be ignored without a word): fatal when one of its sections sets a safety parameter (a
    misspelled node name would leave e.g. ``dry_run`` at its default and the robot driven), else a warning
    (a file shared by several nodes). None when a section matches, or the file cannot be read here."""
    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(content, Mapping) or any(section_matches(str(key), node_name) for key in content):
        return None
    safety = {spec.name for spec in specs if spec.safety}
    sections = ", ".join(repr(str(key)) for key in content)
    set_here = sorted(name for section in content.values() if isinstance(section, Mapping)
                      for name in (section.get("ros__parameters") or {}) if name in safety)
    message = (f"--params-file {path}: no section for this node {node_name!r} (sections: {sections}): its "
               f"parameters are not used")
    if set_here:
        return True, f"{message}, so {', '.join(set_here)} would stay at the default; name the section " \
                     f"{node_name.rsplit('/', 1)[-1]!r}, {node_name!r} or '/**'"
    return False, message


def check_parameters(settings_class: type, parameters) -> tuple[bool, str]:
    """For a set-parameters callback: (successful, reason) of ``parameters`` (rclpy ``Parameter``s) against
    the table (rclpy checks ranges and read-only itself; this adds choices and the same wording)."""
    rows = {spec.name: spec for spec in table(settings_class)}
    for parameter in parameters:
        spec = rows.get(parameter.name)
        if spec is None:
            continue
        try:
            spec.check(parameter.value)
        except ValueError as err:
            return False, str(err)
    return True, ""


# ------------------------------------------------------------------------------------- documentation
def _yaml_value(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str) and value == "":
        return '""'
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _flags(spec: Spec) -> str:
    allowed = "" if spec.kind in (bool, str, tuple) and spec.choices is None else f" [{spec.allowed()}]"
    return f"{_TYPE_NAMES[spec.kind]}{allowed}{', dynamic (ros2 param set)' if spec.dynamic else ''}"


def render_yaml(settings_class: type, node_name: str, header: str) -> str:
    """The documented params file of a node: ``header`` (comment lines), then every parameter with its
    default, preceded by its description, type, range and dynamic flag as comments."""
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()]
    lines += ["# Generated from the node's parameter table (python -m kuavo_smolvla_ros.ros.param_table): edit",
              "# the table in kuavo_smolvla_ros/ros/, not this file; copy it to change values.",
              f"/**/{node_name}:  # matches the node in any namespace", "  ros__parameters:"]
    for spec in table(settings_class):
        text = f"{spec.description} ({_flags(spec)})"
        lines += textwrap.wrap(text, width=112, initial_indent="    # ", subsequent_indent="    #   ",
                               break_on_hyphens=False)
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


#: How every node of the package ends (``ros/spin.py``), the last section of its ``--help``.
NODE_EXIT_CODES = """exit status:
  0  stopped after it started (Ctrl-C, or the ROS context shut down)
  2  cannot start, one line: a parameter's value or type (naming the parameter, value and allowed range),
     a --params-file (unreadable, not a parameters file, or with no section for the node while it sets a
     safety parameter), the robot profile, a name, or (policy_node) the checkpoint is refused
  130  Ctrl-C before the node was up (policy_node: e.g. while the checkpoint loads)
"""


def help_text(settings_class: type, executable: str, summary: str) -> str:
    """``--help`` of a node: usage, one entry per parameter (type, default, range, dynamic), the exit statuses."""
    lines = [f"usage: {executable} [--help] [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] "
             "[-r __ns:=/NAMESPACE] [-r FROM:=TO ...]]", "", summary.strip(), "", "parameters:"]
    for spec in table(settings_class):
        lines.append(f"  {spec.name} ({_flags(spec)}, default {_yaml_value(spec.default)})")
        lines += textwrap.wrap(spec.description, width=100, initial_indent="      ", subsequent_indent="      ",
                               break_on_hyphens=False)
    return "\n".join(lines) + "\n\n" + NODE_EXIT_CODES


def stray_arguments(argv: list[str]) -> list[str]:
    """The arguments before ``--ros-args`` that a node does not take (it takes ``--help``/``-h`` only there;
    everything else goes after ``--ros-args``)."""
    before_ros = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    return [arg for arg in before_ros if arg not in ("-h", "--help")]


def wants_help(argv: list[str]) -> bool:
    """Whether ``--help``/``-h`` comes before any ``--ros-args`` on the command line."""
    before_ros = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    return any(arg in ("-h", "--help") for arg in before_ros)


def safety_line(settings: Any, extra: Mapping[str, Any] | None = None) -> str:
    """``name=value`` of every parameter flagged ``safety`` (effective values), then ``extra``."""
    values = {spec.name: getattr(settings, spec.name) for spec in table(type(settings)) if spec.safety}
    values.update(extra or {})
    return ", ".join(f"{name}={_yaml_value(value)}" for name, value in values.items())


def documented_files() -> dict[Path, str]:
    """Each shipped params file (source tree) and the text its table renders."""
    from kuavo_smolvla_ros.ros import params, sim_params

    root = Path(__file__).resolve().parents[2] / "config"
    return {root / "policy.yaml": params.documented_yaml(), root / "sim.yaml": sim_params.documented_yaml()}


def main(argv: list[str] | None = None) -> int:
    """Rewrite config/policy.yaml and config/sim.yaml from the tables (``--check``: only report drift)."""
    argv = sys.argv[1:] if argv is None else argv
    stale = [path for path, text in documented_files().items() if not path.is_file() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} does not match its parameter table", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(documented_files()[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
