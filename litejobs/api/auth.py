"""Who is asking: API keys from the config, compared in constant time, never stored or logged."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from litejobs.errors import Unauthorized

ANONYMOUS = ""


def owner_of_key(key: str) -> str:
    """The owner id stored on jobs: a fingerprint of the key, so the key itself is never at rest."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def presented_key(request: Request, body_key: str | None = None) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key") or request.query_params.get("api_key") or body_key


class KeyRing:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def owner(self, key: str | None) -> str:
        """The owner for a presented key; raises Unauthorized. Open servers have one owner."""
        if not self._keys:
            return ANONYMOUS
        if not key:
            raise Unauthorized()
        candidate = key.encode()
        # compare against every key, without stopping early: timing reveals nothing
        matched = False
        for known in self._keys:
            matched |= hmac.compare_digest(candidate, known)
        if not matched:
            raise Unauthorized("the API key is not valid")
        return owner_of_key(key)
