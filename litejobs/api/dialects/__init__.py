"""Hosted vendors' job APIs, each a thin translation onto the engine, mounted at /compat/<vendor>.

A dialect owns no state: it turns a vendor's request into a native submission (same queue, same
table, same retries, timeouts, retention and keys) and a native job back into the vendor's shape.
docs/compat.md lists, per vendor, what is supported and what differs.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Mount

from litejobs.api.dialects import omniscrape, scrapellm, scraperapi, scrapio, spidra
from litejobs.api.dialects.common import ErrorShape, Speaking

#: each vendor's routes, and its error body (None: the native one, as its docs allow)
VENDORS: dict[str, tuple[Sequence[BaseRoute], ErrorShape | None]] = {
    "scraperapi": (scraperapi.ROUTES, None),
    "scrapio": (scrapio.ROUTES, None),
    "omniscrape": (omniscrape.ROUTES, omniscrape.error_shape),
    "spidra": (spidra.ROUTES, spidra.error_shape),
    "scrapellm": (scrapellm.ROUTES, None),
}


def mount(vendor: str, routes: Sequence[BaseRoute], shape: ErrorShape | None) -> Mount:
    if shape is None:
        return Mount(f"/compat/{vendor}", routes=list(routes))
    return Mount(f"/compat/{vendor}", app=Speaking(routes, shape))


ROUTES: list[Mount] = [mount(vendor, routes, shape) for vendor, (routes, shape) in VENDORS.items()]
