"""The `interact` kind: load a page in the browser, run actions in order, then take its outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litejobs.fields import Fields
from litejobs.kinds import Kind
from litejobs.kinds.fetch import FetchParams, read_fetch_fields, run_fetch
from litejobs.kinds.fetch_input import check_browser_request, css_selector_problem

MAX_ACTIONS = 100
#: action type → (required fields with their types, optional fields with their types)
ACTION_FIELDS: dict[str, tuple[dict[str, type | tuple[type, ...]], dict[str, type | tuple[type, ...]]]] = {
    "click": ({"selector": str}, {}),
    "type": ({"selector": str, "text": str}, {}),
    "press": ({"key": str}, {"selector": str}),
    "wait": ({"ms": (int, float)}, {}),
    "wait_for": ({"selector": str}, {"timeout_ms": (int, float)}),
    "scroll": ({}, {"to": str, "by": (int, float), "times": int, "ms": (int, float)}),
    "evaluate": ({"script": str}, {}),
    "screenshot": ({}, {"full_page": bool}),
}

#: (action type, field) → the values it may take; a wait beyond a job's time would only run the job out
_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("wait", "ms"): (0, 60_000),
    ("scroll", "ms"): (0, 60_000),
    ("scroll", "times"): (1, 100),
    # 0: no limit of its own, the render's time; without it, browser_actions.ACTION_WAIT_MS
    ("wait_for", "timeout_ms"): (0, 3_600_000),
}


def _action_problems(index: int, action: Any) -> list[tuple[str, str]]:
    where = f"actions[{index}]"
    if not isinstance(action, Mapping):
        return [(where, "must be an object")]
    kind = action.get("type")
    if kind not in ACTION_FIELDS:
        return [(f"{where}.type", f"must be one of {', '.join(ACTION_FIELDS)}")]
    required, optional = ACTION_FIELDS[kind]
    problems = []
    for name, expected in {**required, **optional}.items():
        value = action.get(name)
        if value is None:
            if name in required:
                problems.append((f"{where}.{name}", "is required"))
        elif (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            problems.append((f"{where}.{name}", "has the wrong type"))
    for name in action:
        if name != "type" and name not in required and name not in optional:
            problems.append((f"{where}.{name}", f"is not a field of a {kind} action"))
    selector = action.get("selector")
    if isinstance(selector, str) and (problem := css_selector_problem(selector)):
        problems.append((f"{where}.selector", problem))
    if kind == "scroll" and action.get("to") not in (None, "bottom"):
        problems.append((f"{where}.to", 'must be "bottom" (or use `by` for pixels)'))
    if kind == "scroll" and action.get("to") is None and action.get("by") is None:
        problems.append((where, 'scroll needs `to: "bottom"` or `by` (pixels)'))
    for (of, name), (low, high) in _RANGES.items():
        value = action.get(name)
        if kind == of and isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            problems.append((f"{where}.{name}", f"must be from {low} to {high}"))
    return problems


def parse_interact(raw: Mapping[str, Any]) -> FetchParams:
    f = Fields(raw, "input")
    values = read_fetch_fields(f, force_render=True)
    check_browser_request(f, values)
    actions = f.any("actions")
    if not isinstance(actions, list) or not actions:
        f.problem("actions", "must be a non-empty list of actions")
        actions = []
    elif len(actions) > MAX_ACTIONS:
        f.problem("actions", f"must have at most {MAX_ACTIONS} actions")
    for index, action in enumerate(actions[:MAX_ACTIONS]):
        for field, problem in _action_problems(index, action):
            f.problem(field, problem)
    f.finish()
    return FetchParams(**values, actions=tuple(dict(a) for a in actions))


KIND = Kind("interact", parse_interact, run_fetch, clock_stops_while_parked=True)
