"""JSON in and out: strict parsing of what clients send, fast and exact encoding of what is stored
and answered.

orjson parses strictly by RFC 8259: NaN, Infinity, a number that overflows to infinity and a lone
surrogate escape (which no UTF-8 text can hold) are errors, where the standard library accepts them
and the request then failed later, after its job was stored (a 500 for an accepted job). orjson
also encodes 10–40x faster (a 10 KB result: 20 µs → 0.6 µs), which the store pays once per job.
Two gaps of orjson are closed here: it reads an integer past 64 bits as a float (lossy), so text
with 19 or more digits in a row is parsed again by the standard library, exactly; and it cannot
encode such an integer (nor nest past 254 levels), so encoding falls back to the standard library
for those. A client's JSON may nest at most MAX_DEPTH levels, so whatever it sends can be stored,
answered and sent on again. Text from the browser may hold a lone UTF-16 surrogate, which no UTF-8
text can: `clean_text` and `without_surrogates` make it U+FFFD where it enters, as a browser shows it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

#: where orjson may have turned an integer into a float: a run of 19+ digits (2**63 has 19)
_LONG_DIGITS = re.compile(rb"\d{19}")
_LONG_DIGITS_TEXT = re.compile(r"\d{19}")
_OPTIONS = orjson.OPT_NON_STR_KEYS

#: what `parse` raises for text that is not strict JSON (a ValueError, as json's own error is)
JSONDecodeError = orjson.JSONDecodeError
#: how deep a client's JSON may nest: far past any real input, and well within what orjson encodes (254)
MAX_DEPTH = 128


def parse(raw: bytes | str) -> Any:
    """Strict JSON → Python, at most MAX_DEPTH levels deep; integers of any size stay exact.
    Raises JSONDecodeError (a ValueError)."""
    value = orjson.loads(raw)
    # a text with fewer brackets than the limit cannot nest deeper: counting them is cheap
    opened = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")
    if opened > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise JSONDecodeError(f"depth limit exceeded: nested more than {MAX_DEPTH} levels deep", "", 0)
    long_digits = _LONG_DIGITS.search(raw) if isinstance(raw, bytes) else _LONG_DIGITS_TEXT.search(raw)
    if long_digits is not None:
        value = json.loads(raw)  # already known to be strict JSON: this only keeps big integers exact
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels in `value` (iterative: no recursion limit)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False


def parse_stored(raw: bytes | str) -> Any:
    """`parse` for text litejobs wrote itself: also what the standard library wrote before the
    parsing was strict (NaN, Infinity in a job's meta or a plugin's result), so old rows stay readable."""
    try:
        return parse(raw)
    except JSONDecodeError:
        return json.loads(raw)


class Unencodable(TypeError, ValueError):
    """A value no JSON text can hold: a string with a lone surrogate, a type neither library encodes.
    A TypeError and a ValueError both, as the libraries' own errors for these were."""


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON. A float NaN or infinity becomes null (strict JSON has no such numbers).
    Raises Unencodable for what cannot be JSON text."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        # an integer past 64 bits, or nesting past orjson's 254 levels (or a lone surrogate, or a
        # type neither library encodes: json raises for those too)
        pass
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:  # a NaN or an infinity: null, as orjson writes them
            text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"))
        return text.encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unencodable(f"not encodable as JSON: {type(exc).__name__}: {exc}") from exc


def clean_text(text: str) -> str:
    """`text` with each lone UTF-16 surrogate as U+FFFD, as a browser shows it; `text` itself when it
    has none. JavaScript strings are UTF-16 and may hold half a pair (a slice through an emoji), which
    no UTF-8 text (a column, a response) can; a pair that arrived as two halves becomes its character."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def without_surrogates(value: Any) -> Any:
    """JSON data with clean_text applied to every string, keys included; `value` itself when none
    needs it (then it costs one orjson encode). What no library encodes is left as it is."""
    try:
        orjson.dumps(value, option=_OPTIONS)
        return value
    except TypeError:
        pass
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return value
    cleaned = clean_text(text)  # a lone surrogate sits inside a string: a quote follows or precedes it
    return value if cleaned is text else json.loads(cleaned)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None, as orjson writes them (for the standard library's turn)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def has_non_finite(value: Any) -> bool:
    """Whether a float NaN or infinity sits anywhere in `value`: `encode` writes it as null, so a
    caller that must keep every value refuses it instead (iterative: no recursion limit)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


def text(value: Any) -> str:
    """`encode` as str, for TEXT columns."""
    return encode(value).decode()
