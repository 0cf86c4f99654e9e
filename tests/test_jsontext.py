"""litejobs.jsontext: strict in, exact and compact out (the API-level cases are in test_hostile.py)."""

from __future__ import annotations

import json

import pytest

from litejobs import jsontext

BIG = 123456789012345678901234567890


@pytest.mark.parametrize(
    "raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", b'"\\ud800"', b'{"a":1}x', b"\xff"]
)
def test_parse_refuses_what_is_not_strict_json(raw: bytes) -> None:
    with pytest.raises(ValueError):
        jsontext.parse(raw)
    with pytest.raises(ValueError):
        jsontext.parse(raw.decode("latin-1"))


def test_integers_of_any_size_stay_exact_both_ways() -> None:
    for raw in (b'{"n": %d, "m": -%d, "f": 1.5}' % (BIG, BIG), b"[18446744073709551616]", b"[9223372036854775808]"):
        assert jsontext.parse(raw) == json.loads(raw)
        assert jsontext.parse(raw.decode()) == json.loads(raw)
    assert jsontext.parse(b"[12345678901234567890123, 0.1]") == [12345678901234567890123, 0.1]
    assert jsontext.encode({"n": BIG, "x": "é"}) == f'{{"n":{BIG},"x":"é"}}'.encode()


def test_encode_is_compact_utf8_with_nan_as_null_on_both_paths() -> None:
    assert jsontext.encode({"a": [1, 2.5, None, True], "é": "ü"}) == '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
    assert jsontext.encode([float("nan"), float("inf")]) == b"[null,null]"
    # an integer past 64 bits sends the value through the standard library: NaN is still null
    assert jsontext.encode({"n": BIG, "x": [float("nan"), (1, float("-inf"))]}) == b'{"n":%d,"x":[null,[1,null]]}' % BIG
    assert jsontext.encode({1: "a", None: "b"}) == b'{"1":"a","null":"b"}'
    assert jsontext.text({"a": "b"}) == '{"a":"b"}'


def test_stored_text_from_before_strict_parsing_still_reads() -> None:
    assert jsontext.parse_stored('{"x":NaN,"y":Infinity}') == {
        "x": pytest.approx(float("nan"), nan_ok=True),
        "y": float("inf"),
    }
    assert jsontext.parse_stored('{"ok":1}') == {"ok": 1}
    with pytest.raises(ValueError):
        jsontext.parse_stored("{broken")


def test_nesting_is_limited_where_encoding_can_still_follow() -> None:
    limit = jsontext.MAX_DEPTH
    at_limit = b"[" * limit + b"]" * limit
    assert jsontext.encode(jsontext.parse(at_limit)) == at_limit
    assert jsontext.parse(b'{"a":' * (limit - 1) + b"{}" + b"}" * (limit - 1)) is not None
    for too_deep in (b"[" * (limit + 1) + b"]" * (limit + 1), b'{"a":' * limit + b"[]" + b"}" * limit):
        with pytest.raises(ValueError, match="nested more than"):
            jsontext.parse(too_deep)
        with pytest.raises(ValueError, match="nested more than"):
            jsontext.parse(too_deep.decode())
    # many brackets side by side are not depth
    wide = b'{"jobs": [' + b",".join([b'{"input": {"url": "x", "output": ["html"]}}'] * 1000) + b"]}"
    assert len(jsontext.parse(wide)["jobs"]) == 1000
    # what orjson cannot encode (past 254 levels) goes through the standard library, NaN included
    deep = inner = []
    for _ in range(400):
        inner.append([])
        inner = inner[0]
    inner.append(float("nan"))
    assert jsontext.encode(deep) == b"[" * 401 + b"null" + b"]" * 401
