"""Plugin job kinds: async functions found through entry points or [kinds], with a declared input schema.

A plugin is `async def run(input: dict, ctx: KindContext) -> dict | JobResult` with an
`input_schema` attribute: field → type name ("string", "integer", "number", "boolean", "object",
"array", "url"; a trailing "?" makes it optional), a Python type (str, int, float, bool, dict,
list), or `{"type", "required"?, "default"?, "choices"?, "min"?, "max"?}`. Submits are checked
against it (422 with details); the function then runs under the engine's retries, timeouts,
cancellation and retention like any built-in kind. docs/plugins.md has a worked example.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from litejobs import jsontext
from litejobs.config import KIND_NAME, KindsConfig
from litejobs.errors import ConfigError, JobError
from litejobs.fields import Fields
from litejobs.jobs import JobResult, JobState
from litejobs.kinds import Kind, KindContext

ENTRY_POINT_GROUP = "litejobs.kinds"
TYPES = ("string", "integer", "number", "boolean", "object", "array", "url")
_PYTHON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
}
_MISSING = object()
#: what a plugin's JobResult may say: the others are the engine's to set (raise JobError to fail)
RESULT_STATES = (JobState.COMPLETED, JobState.PARTIAL)


def job_kind(input_schema: Mapping[str, Any], *, sync_allowed: bool = True) -> Callable[[Any], Any]:
    """Decorator that declares a plugin's input schema (the same as setting `fn.input_schema`)."""

    def declare(fn: Any) -> Any:
        fn.input_schema = dict(input_schema)
        fn.sync_allowed = sync_allowed
        return fn

    return declare


@dataclass(frozen=True)
class InputField:
    name: str
    type: str
    required: bool = True
    default: Any = None
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None


def parse_schema(raw: Any, where: str) -> tuple[InputField, ...]:
    """A declared schema → fields; raises ConfigError naming the plugin and the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: declares no input_schema (a dict of field name → type)")
    return tuple(_parse_field(name, spec, f"{where}: input_schema[{name!r}]") for name, spec in raw.items())


def _parse_field(name: Any, spec: Any, where: str) -> InputField:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: field names are non-empty strings")
    if isinstance(spec, type) and spec in _PYTHON_TYPES:
        return InputField(name, _PYTHON_TYPES[spec])
    if isinstance(spec, str):
        type_name, optional = spec.removesuffix("?"), spec.endswith("?")
        spec = {"type": type_name, "required": not optional}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a type name, a Python type or an object with a type")
    unknown = sorted(set(spec) - {"type", "required", "default", "choices", "min", "max"})
    raw_type = spec.get("type")
    type_name = _PYTHON_TYPES.get(raw_type, raw_type) if isinstance(raw_type, (str, type)) else None
    if unknown or type_name not in TYPES:
        problem = f"unknown key {unknown[0]!r}" if unknown else f"type must be one of {', '.join(TYPES)}"
        raise ConfigError(f"{where}: {problem}")
    default = spec.get("default", _MISSING)
    return InputField(
        name,
        type_name,
        required=bool(spec.get("required", default is _MISSING)),
        default=None if default is _MISSING else default,
        choices=tuple(spec.get("choices") or ()),
        low=spec.get("min"),
        high=spec.get("max"),
    )


def validate_input(fields: tuple[InputField, ...], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The input checked against the schema, defaults filled in; one ValidationFailed lists every problem."""
    f = Fields(raw, "input")
    values = {field.name: _read(f, field) for field in fields}
    f.finish()
    return values


def _read(f: Fields, field: InputField) -> Any:
    # a copy per job: a plugin that changes its input must not change the next job's default
    default_value = copy.deepcopy(field.default)
    # Fields reports a missing key as required only when no default is passed at all
    default = () if field.required else (default_value,)
    name, low, high = field.name, field.low, field.high
    getters: dict[str, Callable[[], Any]] = {
        "string": lambda: f.str(name, *default),
        "url": lambda: f.url(name, *default),
        "integer": lambda: f.int(name, *default, low=low, high=high),
        "number": lambda: f.number(name, *default, low=low, high=high),
        "boolean": lambda: f.bool(name, *default),
        "object": lambda: f.dict(name, *default),
        "array": lambda: _array(f, field, default_value),
    }
    value = getters[field.type]()
    if field.choices and value is not None and value not in field.choices:
        f.problem(name, f"must be one of {', '.join(map(str, field.choices))}")
    return value


def _array(f: Fields, field: InputField, default: Any) -> Any:
    value = f.any(field.name, default)
    if value is None and field.required:
        f.problem(field.name, "is required")
    elif value is not None and value is not default and not isinstance(value, list):
        f.problem(field.name, "must be a JSON array")
    return value


def plugin_kind(name: str, fn: Any, where: str) -> Kind:
    """Wrap a plugin function as a Kind; raises ConfigError if it is not a usable plugin."""
    if not inspect.iscoroutinefunction(fn):
        raise ConfigError(f"{where}: {fn!r} is not an async function (async def name(input, ctx))")
    fields = parse_schema(getattr(fn, "input_schema", None), where)

    def parse(raw: Mapping[str, Any]) -> dict[str, Any]:
        return validate_input(fields, raw)

    async def run(params: dict[str, Any], ctx: KindContext) -> JobResult:
        return result_of(await fn(params, ctx), name)

    return Kind(name, parse, run, sync_allowed=bool(getattr(fn, "sync_allowed", True)))


def result_of(value: Any, name: str) -> JobResult:
    """A plugin's return value as a JobResult: a dict is the outputs, anything else `{"result": value}`.
    Raises a non-retryable JobError for what the store could not keep: another run would return it again."""
    if isinstance(value, JobResult):
        return _checked_result(value, name)
    outputs = value if isinstance(value, dict) else {"result": value}
    if not _is_json(outputs):
        raise JobError(f"plugin kind {name!r} returned a value that is not JSON", retryable=False)
    return JobResult(JobState.COMPLETED, outputs)


def _checked_result(result: JobResult, name: str) -> JobResult:
    """A plugin's own JobResult, if it finishes the job: any other status would leave the job
    active, or run it again past max_attempts, or fail it with no error."""
    if result.status not in RESULT_STATES:
        raise JobError(
            f"plugin kind {name!r} returned a JobResult with status {str(result.status)!r}: only completed or "
            "partial finish a job (raise JobError to fail it)",
            retryable=False,
        )
    for part, content in (("outputs", result.outputs), ("stats", result.stats)):
        if not isinstance(content, dict) or not _is_json(content):
            message = f"plugin kind {name!r} returned a JobResult whose {part} are not a JSON object"
            raise JobError(message, retryable=False)
    return JobResult(JobState(result.status), result.outputs, result.stats)


def _is_json(value: Any) -> bool:
    """Whether the store can write `value` as it is (it encodes with jsontext too). A NaN or an
    infinity is refused: jsontext would store it as null, a value the plugin never returned."""
    try:
        jsontext.encode(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return not jsontext.has_non_finite(value)


def _load(entry: EntryPoint, where: str) -> Any:
    try:
        return entry.load()
    except Exception as exc:
        raise ConfigError(f"{where}: cannot load {entry.value!r}: {type(exc).__name__}: {exc}") from None


def plugin_kinds(
    configured: KindsConfig, reserved: Iterable[str], installed: Iterable[EntryPoint] | None = None
) -> list[Kind]:
    """Kinds from the `litejobs.kinds` entry points, then [kinds] (which wins on a shared name).
    A plugin may not take a built-in kind's name: the built-ins are what every dialect relies on."""
    found: dict[str, tuple[EntryPoint, str]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP) if installed is None else installed:
        found[entry.name] = (entry, f"plugin kind {entry.name!r} (entry point {entry.value})")
    for name, target in configured.items():
        found[name] = (EntryPoint(name, target, ENTRY_POINT_GROUP), f"plugin kind {name!r} ([kinds] {name})")
    taken = set(reserved)
    kinds = []
    for name, (entry, where) in found.items():
        if not KIND_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a kind name is lowercase letters, digits and _, from a letter on")
        if name in taken:
            raise ConfigError(f"{where}: {name!r} is a built-in kind; choose another name")
        kinds.append(plugin_kind(name, _load(entry, where), where))
    return kinds
