"""Strict YAML -> dataclass loading: every key is known, every value has its declared type.

Used for the robot profiles (:mod:`kuavo_smolvla_ros.contract.profile`) and the conversion config
(:mod:`kuavo_smolvla_ros.data.config`): an unknown key or a wrongly typed value is refused with its dotted
path (``cameras[1].sync.max_age_s``), never ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any


class SchemaError(ValueError):
    """A mapping that does not fit its schema; the message names the key by its dotted path."""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise SchemaError(f"{where} must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except SchemaError as err:
                errors.append(str(err))
        raise SchemaError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of "
                          f"{[_type_name(o) for o in options if o is not type(None)]}")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise SchemaError(f"{where} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise SchemaError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where} must be a mapping, got {type(value).__name__}")
        _, item = typing.get_args(hint) or (str, Any)
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-1 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise SchemaError(f"{where} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SchemaError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SchemaError(f"{where} must be a string, got {value!r}")
        return value
    return value


def _schema_fields(cls: type) -> list[dataclasses.Field]:
    """The fields read from and written to mappings (``metadata={"schema": False}`` keeps one out)."""
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("schema", True)]


def build[T](cls: type[T], data: Any, where: str = "") -> T:
    """A ``cls`` dataclass from a mapping: missing keys take the field defaults; unknown keys and values of
    the wrong type raise :class:`SchemaError` naming their path."""
    label = where or "the top level"
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise SchemaError(f"{label} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in _schema_fields(cls)]
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise SchemaError(f"unknown key(s) {unknown} in {label} (known: {sorted(known)})")
    values = {}
    for name in known:
        if name in data:
            values[name] = _convert(hints[name], data[name], f"{where}.{name}" if where else name)
    try:
        return cls(**values)
    except TypeError as err:  # a required field left out
        missing = [f.name for f in _schema_fields(cls) if f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SchemaError(f"{label} lacks required key(s) {missing}") from None
        raise SchemaError(f"{label}: {err}") from None


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path`` (an empty file reads as ``{}``); :class:`SchemaError` naming ``what``, the
    file and the reason if it cannot be read or parsed."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """A safe loader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(loader, node, deep=False):
        keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"key(s) {repeated} given twice", node.start_mark)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(path.read_text(), Loader=StrictLoader) or {}  # a SafeLoader
    except OSError as err:
        raise SchemaError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SchemaError(f"{what} {path}: invalid YAML ({' '.join(str(err).split())})") from None


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain dicts and lists, the inverse of :func:`build`."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in _schema_fields(type(obj))}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
