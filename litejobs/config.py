"""Configuration: one frozen dataclass per section, loaded from TOML, then env, then CLI flags.

config.example.toml is the reference for every key; tests/test_config.py holds the two together.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litejobs.errors import ConfigError

ENV_PREFIX = "LITEJOBS_"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    #: seconds active jobs get to finish on SIGTERM before they are handed back to the queue
    shutdown_grace_s: float = 10.0
    log_format: str = "text"


@dataclass(frozen=True)
class StoreConfig:
    path: str = "litejobs.db"
    #: a PostgreSQL database ("postgresql://user:pass@host:5432/db") shared by several nodes; empty: SQLite at `path`
    url: str = ""
    #: terminal jobs (and their files) are deleted this long after they end
    retention_s: float = 86400.0
    sweep_interval_s: float = 60.0
    #: where screenshots and PDFs go; empty means `<path>.files` next to the SQLite database, or, on
    #: PostgreSQL, the database itself (so that every node serves every file)
    files_dir: str = ""
    #: the most the database file may grow to, in MiB; past it writes answer 507 storage_full; 0: no limit
    max_db_mb: int = 0
    #: ?wait= long-polls and event streams re-read the store this often for changes no notice told
    #: of (another process on the SQLite file; on PostgreSQL other nodes' changes are announced)
    recheck_s: float = 1.0


@dataclass(frozen=True)
class QueueConfig:
    enabled: bool = True
    concurrency: int = 8
    #: waiting + delayed jobs allowed before submits answer 429 queue_full
    max_depth: int = 100_000
    max_attempts: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    lease_s: float = 30.0
    #: times a job may be recovered from a dead worker before it fails with code `poisoned`
    max_recoveries: int = 3


@dataclass(frozen=True)
class FetchConfig:
    timeout_s: float = 30.0
    user_agent: str = "litejobs/0.1 (+https://github.com/litejobs/litejobs)"
    max_body_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 10
    #: total open connections across all jobs
    connections: int = 100
    #: private and loopback targets; unset means: allowed when the server listens on loopback
    allow_private_networks: bool | None = None
    #: address ranges (CIDR) no job or webhook may reach, on top of the built-in ones
    blocked_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrowserConfig:
    #: path to Chromium; empty means: look for chromium, chromium-browser, google-chrome on PATH
    executable: str = ""
    max_pages: int = 4
    recycle_after_pages: int = 500
    max_rss_mb: int = 2048
    launch_timeout_s: float = 30.0
    viewport_width: int = 1280
    viewport_height: int = 800


@dataclass(frozen=True)
class AuthConfig:
    keys: tuple[str, ...] = ()
    allow_anonymous: bool = False
    #: requests per second per key; 0 means unlimited
    rate_per_s: float = 0.0


@dataclass(frozen=True)
class LimitsConfig:
    sync_timeout_s: float = 15.0
    max_timeout_s: float = 600.0
    default_timeout_s: float = 60.0
    max_request_bytes: int = 1024 * 1024
    max_batch: int = 1000


@dataclass(frozen=True)
class CrawlConfig:
    #: the largest max_pages a crawl may ask for
    max_pages: int = 10_000
    per_host_concurrency: int = 4
    per_host_delay_ms: int = 0
    #: PostgreSQL: a request's hold on one of a host's shared slots, renewed every third of it while
    #: the request runs; a node that dies frees its slots this long after its last renewal at most
    host_lease_s: float = 30.0
    #: on a store several nodes share (PostgreSQL), per-host limits hold across all nodes (two
    #: statements per request); false keeps them per node (each node's limits apply to its own requests only)
    shared_gate: bool = True


@dataclass(frozen=True)
class WebhooksConfig:
    #: HMAC-SHA256 key of X-Litejobs-Signature; empty means deliveries are not signed
    secret: str = ""
    #: per delivery attempt: connect, send, and the receiver's answer
    timeout_s: float = 10.0
    #: retries after a failed attempt (network error, timeout, 5xx, 408, 429); other answers are final
    max_retries: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    #: deliveries in flight at once
    concurrency: int = 4


@dataclass(frozen=True)
class AiConfig:
    #: an OpenAI-compatible API (e.g. "http://127.0.0.1:8080/v1"); empty: prompts fall back to markdown
    base_url: str = ""
    model: str = ""
    api_key: str = ""
    timeout_s: float = 30.0


KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, init=False, eq=False)
class KindsConfig(Mapping[str, str]):
    """[kinds]: plugin job kinds as `name = "package.module:function"`.

    Its keys are kind names, not settings, so it declares no fields (walking the config, as the
    example-file test does, sees a section with no fixed keys) and is read as one table by
    `from_table`, which checks each name and target instead of rejecting unknown keys."""

    def __init__(self, targets: Mapping[str, str] | None = None) -> None:
        object.__setattr__(self, "_targets", dict(targets or {}))
        self._targets: dict[str, str]

    @classmethod
    def from_table(cls, values: Mapping[str, Any]) -> KindsConfig:
        for name, target in values.items():
            if not KIND_NAME.fullmatch(name):
                raise ConfigError(f"kinds.{name}: a kind name is lowercase letters, digits and _, from a letter on")
            module, _, attr = target.partition(":") if isinstance(target, str) else ("", "", "")
            if not module or not attr:
                raise ConfigError(f'kinds.{name}: expected "package.module:function", got {target!r}')
        return cls(values)

    def __getitem__(self, name: str) -> str:
        return self._targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KindsConfig) and self._targets == other._targets

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._targets.items())))

    def __repr__(self) -> str:
        return f"KindsConfig({self._targets!r})"


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    browser: BrowserConfig = field(default_factory=BrowserConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    ai: AiConfig = field(default_factory=AiConfig)
    kinds: KindsConfig = field(default_factory=KindsConfig)

    @property
    def files_dir(self) -> Path:
        return Path(self.store.files_dir or f"{self.store.path}.files")

    @property
    def allow_private_networks(self) -> bool:
        if self.fetch.allow_private_networks is not None:
            return self.fetch.allow_private_networks
        return is_loopback_host(self.server.host)

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some keys of one section changed (validated like loaded values)."""
        current = getattr(self, section)
        merged = dict(current) if isinstance(current, KindsConfig) else {}
        merged.update({f.name: getattr(current, f.name) for f in dataclasses.fields(current)})
        merged.update(changes)
        return dataclasses.replace(self, **{section: _build_section(section, type(current), merged)})


def is_loopback_host(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _coerce(where: str, expected: Any, value: Any) -> Any:
    """Check and convert one value to the field's type; raise ConfigError naming the key."""
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(where, inner, value)
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(f"{where}[]", args[0], v) for v in value)
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if expected is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value) if isinstance(value, (int, str)) else _fail(where, "an integer", value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if expected is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value) if isinstance(value, (int, float, str)) else _fail(where, "a number", value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {expected!r}")  # pragma: no cover


def _fail(where: str, what: str, value: Any) -> Any:
    raise ConfigError(f"{where}: expected {what}, got {value!r}")


_POSITIVE = {
    "server.port": (0, 65535),
    "store.max_db_mb": (0, None),
    "store.recheck_s": (0.01, 3600),
    "queue.concurrency": (1, 10_000),
    "queue.max_depth": (1, None),
    "queue.max_attempts": (1, 100),
    "queue.lease_s": (1, None),
    "browser.max_pages": (1, 256),
    "limits.sync_timeout_s": (0.1, None),
    "limits.max_timeout_s": (1, None),
    "limits.max_request_bytes": (1024, None),
    "fetch.timeout_s": (0.1, None),
    "fetch.max_body_bytes": (1, None),
    "crawl.per_host_concurrency": (1, None),
    "crawl.host_lease_s": (1, None),
    "webhooks.timeout_s": (0.1, None),
    "webhooks.max_retries": (0, 100),
    "webhooks.concurrency": (1, 1000),
}


def _build_section(name: str, cls: type, values: Mapping[str, Any]) -> Any:
    if cls is KindsConfig:
        return KindsConfig.from_table(values)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key [{name}] {unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, value in values.items():
        where = f"{name}.{key}"
        coerced = _coerce(where, hints[key], value)
        bounds = _POSITIVE.get(where)
        if bounds is not None and coerced is not None:
            low, high = bounds
            if coerced < low or (high is not None and coerced > high):
                raise ConfigError(f"{where}: {coerced!r} is out of range ({low} to {high or 'any'})")
        if where == "server.log_format" and coerced not in ("text", "json"):
            raise ConfigError(f"{where}: expected 'text' or 'json', got {coerced!r}")
        if where == "fetch.blocked_networks":
            for cidr in coerced:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ConfigError(f"{where}: {cidr!r} is not an address range like 10.0.0.0/8") from None
        kwargs[key] = coerced
    return cls(**kwargs)


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """TOML file (or `LITEJOBS_CONFIG`), then `LITEJOBS_<SECTION>_<KEY>` variables, then `overrides`."""
    env = os.environ if env is None else env
    path = path or env.get(f"{ENV_PREFIX}CONFIG") or None
    raw: dict[str, dict[str, Any]] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"unknown top-level key {section!r}: settings go in [sections]")
            raw[section] = dict(values)
    sections = _section_types()
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == f"{ENV_PREFIX}CONFIG":
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            raise ConfigError(f"unknown environment setting {var}")
        raw.setdefault(section, {})[key] = value
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] (known: {', '.join(sections)})")
    built = {name: _build_section(name, cls, raw.get(name, {})) for name, cls in sections.items()}
    config = Config(**built)
    if not config.auth.keys and not config.auth.allow_anonymous and not is_loopback_host(config.server.host):
        raise ConfigError(
            f"server.host = {config.server.host!r} is not loopback and no [auth] keys are set: "
            "set auth.keys, or auth.allow_anonymous = true to serve anyone on the network"
        )
    return config
