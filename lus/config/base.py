"""Typed, validated sections of ``params.yaml``.

Every DVC stage reads exactly one section (plus ``base``) and parses it into a frozen dataclass
that subclasses :class:`Section`. Validation happens once, before any work: an unknown key, a
value of the wrong type or a value outside the allowed set/range raises :class:`ParamsError`
naming the dotted key (``aggregator.tnorm``) and what was expected.

Constraints are declared next to the field with :func:`choice` / :func:`bounded`, so the
allowed values live in one place and appear in the error message.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import yaml

S = TypeVar("S", bound="Section")


class ParamsError(ValueError):
    """A parameter is unknown, missing, of the wrong type or outside its allowed values."""


def choice(default: Any, options: typing.Sequence[Any], doc: str = "") -> Any:
    """A field whose value must be one of ``options``."""
    return dataclasses.field(default=default, metadata={"choices": tuple(options), "doc": doc})


def bounded(default: Any, lo: float | None = None, hi: float | None = None, doc: str = "") -> Any:
    """A numeric field (or list of numbers) whose value(s) must lie in ``[lo, hi]``."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "doc": doc})


def listof(default: list, options: typing.Sequence[Any] | None = None, doc: str = "") -> Any:
    """A list field (mutable default handled); optional allowed values for its items."""
    meta: dict[str, Any] = {"doc": doc}
    if options is not None:
        meta["choices"] = tuple(options)
    return dataclasses.field(default_factory=lambda: list(default), metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamsError as exc:
                errors.append(str(exc))
        expected = " or ".join(_type_name(a) for a in args)
        raise ParamsError(f"params key '{key}': expected {expected}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"params key '{key}': expected a list, got {value!r}")
        (item_tp,) = args or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params key '{key}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"params key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"params key '{key}': expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")


def _check_constraints(value: Any, meta: Mapping[str, Any], key: str) -> None:
    items = value if isinstance(value, list) else [value]
    if "choices" in meta:
        for v in items:
            if v not in meta["choices"]:
                allowed = ", ".join(map(str, meta["choices"]))
                raise ParamsError(f"params key '{key}': {v!r} is not allowed; expected one of: {allowed}")
    if "range" in meta:
        lo, hi = meta["range"]
        for v in items:
            if v is None:
                continue
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                lo_s = "-inf" if lo is None else lo
                hi_s = "inf" if hi is None else hi
                raise ParamsError(f"params key '{key}': {v!r} is outside the allowed range [{lo_s}, {hi_s}]")


@dataclasses.dataclass(frozen=True)
class Section:
    """Base class of a params section. Subclasses set ``NAME`` (the top-level key) and fields."""

    NAME: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise :class:`ParamsError`."""

    @classmethod
    def from_dict(cls: type[S], raw: Mapping[str, Any] | None) -> S:
        raw = dict(raw or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise ParamsError(
                f"params section '{cls.NAME}': unknown key(s) {', '.join(unknown)}; "
                f"allowed keys: {', '.join(sorted(fields))}"
            )
        values = {}
        for name, field in fields.items():
            key = f"{cls.NAME}.{name}"
            if name not in raw:
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    raise ParamsError(f"params key '{key}' is required")
                continue
            value = _coerce(raw[name], hints[name], key)
            _check_constraints(value, field.metadata, key)
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_params_file(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_section(cls: type[S], path: str | Path = "params.yaml") -> S:
    """Parse one section of the params file into ``cls`` (validated)."""
    data = read_params_file(path)
    if cls.NAME not in data:
        raise ParamsError(f"{path}: section '{cls.NAME}' is missing")
    raw = data[cls.NAME]
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: section '{cls.NAME}' must be a mapping, got {raw!r}")
    return cls.from_dict(raw)
