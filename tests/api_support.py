"""API test support: the one shape every error body has, checked wherever a test reads an error."""

from __future__ import annotations

from typing import Any

from tests.support import Response


def error_of(resp: Response) -> dict[str, Any]:
    """The error object of `resp`, once its body is checked to be exactly {error, request_id}."""
    body = resp.json
    assert set(body) == {"error", "request_id"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["message"] and body["request_id"] == resp.headers["x-request-id"]
    return body["error"]  # type: ignore[no-any-return]
