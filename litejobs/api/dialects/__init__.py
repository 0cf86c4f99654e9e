"""Hosted vendors' job APIs, each a thin translation onto the engine, mounted at /compat/<vendor>.

A dialect owns no state: it turns a vendor's request into a native submission (same queue, same
table, same retries, timeouts, retention and keys) and a native job back into the vendor's shape.
docs/compat.md lists, per vendor, what is supported and what differs.
"""

from __future__ import annotations

from starlette.routing import Mount

from litejobs.api.dialects import omniscrape, scrapellm, scraperapi, scrapio, spidra

VENDORS = {
    "scraperapi": scraperapi.ROUTES,
    "scrapio": scrapio.ROUTES,
    "omniscrape": omniscrape.ROUTES,
    "spidra": spidra.ROUTES,
    "scrapellm": scrapellm.ROUTES,
}

ROUTES: list[Mount] = [Mount(f"/compat/{vendor}", routes=routes) for vendor, routes in VENDORS.items()]
