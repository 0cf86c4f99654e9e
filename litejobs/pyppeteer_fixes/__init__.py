"""Every workaround pyppeteer 2.0.0 needs against Chromium 156, listed here (shared/notes/pyppeteer.md §3).

Pitfall numbers are the notes'. The fixes, and where each one lives:

- 1, Network.setRequestInterception is gone: `intercept_requests` pauses requests with the Fetch domain
  (pages.py).
- 2, a cancelled call's late reply or close kills the receive loop: `apply_connection_patches`
  monkeypatches Connection and CDPSession, and keeps unawaited envelope failures out of the log
  (connection.py).
- 3 and 4, a crashed page kills the connection or leaves calls pending for ever: `open_page` listens for
  'error' at once, `guarded` races a call against the crash, `close_quietly` gives up on a dead renderer
  (pages.py); `on_disconnect` hears of a receive loop that died silently (connection.py).
- 5-8, launch() blocks the loop, installs signal handlers and atexit hooks, and polls over a proxy:
  `connect_browser` connects to a Chromium started by litejobs.chromium.spawn_chromium (connection.py).
- 9 and 10, orphans, zombies and leftover profiles: litejobs.chromium starts Chromium with a parent-death
  signal in its own process group, kills the group and removes the profile.
- 11, Chromium resolves Google's hosts by itself: litejobs.chromium.chromium_args adds the host
  resolver rules the pool is given. Through the SOCKS5 egress proxy Chromium hands over names it never
  resolves, so the proxy applies those rules (litejobs.egress_proxy.HostRules) before its own lookup, and
  whatever Chromium still looks up itself answers 0.0.0.0 (chromium._RESOLVE_NOTHING).
- page.goto leaves its navigation watcher pending when navigation fails: `goto` (pages.py), which also keeps
  the answer of a navigation Chromium refused (NavigationFailed).
- an unanswered JavaScript dialog stops the page until the render times out: `open_page` answers them
  (pages.py); `deny_downloads` keeps a page that is a download off the disk.
- a popup closed before its first navigation commits leaves two of pyppeteer's Browser tasks pending for
  ever: `apply_connection_patches` replaces Browser._targetDestroyed (connection.py).
- a call pending while the page navigates fails with "Inspected target navigated or closed" where
  pyppeteer expects a destroyed context: `wait_for_selector` and `across_navigations` go on in the next
  document (pages.py).
- page.evaluate takes any script containing "=>" for a function: `evaluate_script` (pages.py).
- a main document cut off after its headers still fires load (the page completes with a part of the
  body), and one subresource that never loads holds back `load` for ever: `goto` watches the main
  request's Network.loadingFailed (NavigationFailed cut_off) and, given `give_up_at`, settles for
  DOMContentLoaded then (pages.py).
"""

from litejobs.pyppeteer_fixes.connection import (
    apply_connection_patches,
    connect_browser,
    consume_exception,
    on_disconnect,
)
from litejobs.pyppeteer_fixes.pages import (
    Interrupted,
    NavigationFailed,
    across_navigations,
    close_quietly,
    deny_downloads,
    evaluate_script,
    goto,
    guarded,
    intercept_requests,
    open_page,
    wait_for_selector,
)

__all__ = [
    "Interrupted",
    "NavigationFailed",
    "across_navigations",
    "apply_connection_patches",
    "close_quietly",
    "connect_browser",
    "consume_exception",
    "deny_downloads",
    "evaluate_script",
    "goto",
    "guarded",
    "intercept_requests",
    "on_disconnect",
    "open_page",
    "wait_for_selector",
]
