"""How config.py reads one value: its type checked and converted, its range enforced; each error
names the key. Apart from config.py so that the sections' definitions stay readable."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any, TypeVar

from litejobs.errors import ConfigError

Number = TypeVar("Number", int, float)


def bounded(default: Number, low: float, high: float | None = None) -> Number:
    """A numeric key's default and the range it accepts, both ends included (high None: no upper
    bound). Durations stored as epoch milliseconds get an upper bound so they cannot overflow."""
    return field(default=default, metadata={"range": (low, high)})


def coerce(where: str, expected: Any, value: Any) -> Any:
    """Check and convert one value to the field's type; raise ConfigError naming the key."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = next(a for a in args if a is not type(None))
        return coerce(where, inner, value)
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(coerce(f"{where}[]", args[0], v) for v in value)
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if expected is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value) if isinstance(value, (int, str)) else _fail(where, "an integer", value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if expected is float:
        return _coerce_float(where, value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {expected!r}")  # pragma: no cover


def _coerce_float(where: str, value: Any) -> float:
    """A finite float: nan slips through every comparison and inf overflows the first int() of it,
    so both are refused here rather than failing later, far from the key that caused it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    except OverflowError:  # an integer past float's range
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return number


def _fail(where: str, what: str, value: Any) -> Any:
    raise ConfigError(f"{where}: expected {what}, got {value!r}")


def check_range(where: str, key: dataclasses.Field[Any], value: Any) -> None:
    """Refuse a value outside the range the key declares with `bounded`."""
    if "range" not in key.metadata or value is None:
        return
    low, high = key.metadata["range"]
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{where}: {value!r} is out of range ({low} to {'any' if high is None else high})")
