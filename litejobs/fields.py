"""Reading untrusted JSON objects field by field, collecting every problem for one 422."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from litejobs.errors import ValidationFailed

_MISSING = object()
ALLOWED_URL_SCHEMES = ("http", "https")


def url_problem(value: str) -> str | None:
    """Why `value` is not a URL a job may fetch, or None when it is one."""
    if len(value) > 8192:
        return "is longer than 8192 characters"
    try:
        parts = urlsplit(value.strip())
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme.lower() not in ALLOWED_URL_SCHEMES:
        return f"must be an http or https URL, not {parts.scheme or 'a relative URL'!r}"
    if not parts.hostname:
        return "has no host"
    try:
        _ = parts.port
    except ValueError:
        return "has an invalid port"
    if any(ch in value for ch in "\r\n\t\x00 "):
        return "contains whitespace or control characters"
    try:
        URL(value.strip())  # the parser aiohttp fetches with: IDNA and the characters a host may hold
    except ValueError as exc:
        return f"has a host name that cannot be used ({exc})"
    return None


class Fields:
    """`Fields(raw, "input")`; call `.str("url")` etc.; then `.finish()` raises one ValidationFailed
    listing every problem, with dotted field names like `input.url`."""

    def __init__(self, raw: Any, prefix: str = "") -> None:
        self.prefix = prefix
        self.problems: list[dict[str, str]] = []
        if not isinstance(raw, Mapping):
            self.problem("", "must be a JSON object")
            raw = {}
        self.raw: Mapping[str, Any] = raw
        self._seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix and key else (key or self.prefix or "body")

    def problem(self, key: str, problem: str) -> None:
        self.problems.append({"field": self.name(key), "problem": problem})

    def _get(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        value = self.raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                self.problem(key, "is required")
                return None
            return default
        return value

    def any(self, key: str, default: Any = None) -> Any:
        return self._get(key, default)

    def str(self, key: str, default: Any = _MISSING, *, max_len: int = 100_000, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if value is None or (value is default and default is not _MISSING):
            return value
        if not isinstance(value, str):
            self.problem(key, "must be a string")
            return default if default is not _MISSING else None
        if len(value) > max_len:
            self.problem(key, f"must be at most {max_len} characters")
        if choices and value not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}")
        return value

    def url(self, key: str, default: Any = _MISSING) -> Any:
        value = self.str(key, default)
        if isinstance(value, str) and value is not default:
            problem = url_problem(value)
            if problem:
                self.problem(key, problem)
            return value.strip()
        return value

    def int(self, key: str, default: Any = _MISSING, *, low: int | None = None, high: int | None = None) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.problem(key, "must be an integer")
                return default if default is not _MISSING else None
        return self._bounded(key, value, low, high, default)

    def number(self, key: str, default: Any = _MISSING, *, low: float | None = None, high: float | None = None) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(key, "must be a number")
            return default if default is not _MISSING else None
        return self._bounded(key, float(value), low, high, default)

    def _bounded(self, key: str, value: Any, low: Any, high: Any, default: Any) -> Any:
        if low is not None and value < low:
            self.problem(key, f"must be at least {low}")
        elif high is not None and value > high:
            self.problem(key, f"must be at most {high}")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problem(key, "must be true or false")
            return default if default is not _MISSING else None
        return value

    def dict(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is None:
            return None
        if value is default and default is not _MISSING:
            return copy.deepcopy(value)  # a kind may change its input: the next job must get the default intact
        if not isinstance(value, Mapping):
            self.problem(key, "must be a JSON object")
            return default if default is not _MISSING else None
        return dict(value)

    def str_list(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        choices: tuple[str, ...] = (),
        max_items: int = 1000,
        unique: bool = True,
    ) -> Any:
        """A list of strings (one string counts as a list of it). `unique` drops repeats, for lists that
        are sets of options; without it the list is kept as sent, so that item i is the caller's item i."""
        value = self._get(key, default)
        if value is None:
            return None
        if value is default and default is not _MISSING:
            return copy.deepcopy(value)  # as in dict(): a default is never handed out to be changed
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(key, "must be a list of strings")
            return default if default is not _MISSING else None
        if len(value) > max_items:
            self.problem(key, f"must have at most {max_items} items")
        for item in value:
            if choices and item not in choices:
                self.problem(key, f"{item!r} is not one of {', '.join(choices)}")
        return list(dict.fromkeys(value)) if unique else list(value)

    def str_map(self, key: str, default: Any = _MISSING) -> Any:
        """A JSON object of string → string, refusing CR/LF (header injection)."""
        value = self.dict(key, default)
        if not isinstance(value, dict) or value is default:
            return value
        for k, v in value.items():
            if not isinstance(v, str):
                self.problem(f"{key}.{k}", "must be a string")
            elif any(ch in k + v for ch in "\r\n\x00"):
                self.problem(f"{key}.{k}", "must not contain CR, LF or NUL")
        return value

    def reject_unknown(self) -> None:
        for key in self.raw:
            if key not in self._seen:
                self.problem(key, "is not a known field")

    def finish(self, *, strict: bool = True) -> None:
        if strict:
            self.reject_unknown()
        if self.problems:
            raise ValidationFailed(self.problems)
