"""Configuration: one frozen dataclass per section, loaded from TOML, then env, then CLI flags.

config.example.toml is the reference for every key; tests/test_config.py holds the two together.
Each numeric key declares its accepted range where it is defined (`bounded`); a value outside it,
or a float that is not finite (nan, inf), stops the server with a message naming the key.

From the environment, `LITEJOBS_<SECTION>_<KEY>` is a server setting when SECTION is a known
section, and an unknown KEY there stops the server (a typo must not pass silently). Any other
`LITEJOBS_*` variable is not a server setting and is not read here: `LITEJOBS_CONFIG` names the
file, the client commands read `LITEJOBS_URL` and `LITEJOBS_API_KEY`, and tools may have their own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litejobs.config_values import bounded, check_range, coerce
from litejobs.errors import ConfigError

ENV_PREFIX = "LITEJOBS_"
#: LITEJOBS_* variables that are never server settings, whatever sections there are one day
NOT_SETTINGS = frozenset({f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}URL", f"{ENV_PREFIX}API_KEY"})

DAY_S = 86_400


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    #: 0: any free port
    port: int = bounded(8000, 0, 65535)
    #: seconds active jobs get to finish on SIGTERM before they are handed back to the queue; 0: none
    shutdown_grace_s: float = bounded(10.0, 0)
    log_format: str = "text"


@dataclass(frozen=True)
class StoreConfig:
    path: str = "litejobs.db"
    #: a PostgreSQL database ("postgresql://user:pass@host:5432/db") shared by several nodes; empty: SQLite at `path`
    url: str = ""
    #: terminal jobs (and their files) are deleted this long after they end; 0: at the next sweep
    retention_s: float = bounded(86400.0, 0, 100 * 365 * DAY_S)
    #: how often the sweep runs; it also paces lease recovery, so near 0 it would keep a core busy
    sweep_interval_s: float = bounded(60.0, 0.1)
    #: where screenshots and PDFs go; empty means `<path>.files` next to the SQLite database, or, on
    #: PostgreSQL, the database itself (so that every node serves every file)
    files_dir: str = ""
    #: the most the database file may grow to, in MiB; past it writes answer 507 storage_full; 0: no limit
    max_db_mb: int = bounded(0, 0)
    #: ?wait= long-polls and event streams re-read the store this often for changes no notice told
    #: of (another process on the SQLite file; on PostgreSQL other nodes' changes are announced)
    recheck_s: float = bounded(1.0, 0.01, 3600)


@dataclass(frozen=True)
class QueueConfig:
    enabled: bool = True
    concurrency: int = bounded(8, 1, 10_000)
    #: waiting + delayed jobs allowed before submits answer 429 queue_full
    max_depth: int = bounded(100_000, 1)
    #: at most what a submit may ask for
    max_attempts: int = bounded(3, 1, 20)
    #: 0: retry at once; at most what a submit may ask for as delay_s
    backoff_base_s: float = bounded(1.0, 0, 30 * DAY_S)
    backoff_max_s: float = bounded(300.0, 0, 30 * DAY_S)
    #: renewed every third of it while a job runs, so long jobs need no long lease
    lease_s: float = bounded(30.0, 1, DAY_S)
    #: times a job may be recovered from a dead worker before it fails with code `poisoned`; 0: never
    max_recoveries: int = bounded(3, 0)


@dataclass(frozen=True)
class FetchConfig:
    timeout_s: float = bounded(30.0, 0.1)
    user_agent: str = "litejobs/0.1 (+https://github.com/litejobs/litejobs)"
    max_body_bytes: int = bounded(10 * 1024 * 1024, 1)
    #: 0: redirects are not followed
    max_redirects: int = bounded(10, 0)
    #: total open connections across all jobs
    connections: int = bounded(100, 1)
    #: private and loopback targets; unset means: allowed when the server listens on loopback
    allow_private_networks: bool | None = None
    #: address ranges (CIDR) no job or webhook may reach, on top of the built-in ones
    blocked_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrowserConfig:
    #: path to Chromium; empty means: look for chromium, chromium-browser, google-chrome on PATH
    executable: str = ""
    max_pages: int = bounded(4, 1, 256)
    recycle_after_pages: int = bounded(500, 1)
    max_rss_mb: int = bounded(2048, 1)
    launch_timeout_s: float = bounded(30.0, 1)
    #: Chromium's largest texture side caps what a screenshot can hold
    viewport_width: int = bounded(1280, 1, 16_384)
    viewport_height: int = bounded(800, 1, 16_384)


@dataclass(frozen=True)
class AuthConfig:
    keys: tuple[str, ...] = ()
    allow_anonymous: bool = False
    #: requests per second per key; 0 means unlimited
    rate_per_s: float = bounded(0.0, 0)


@dataclass(frozen=True)
class LimitsConfig:
    sync_timeout_s: float = bounded(15.0, 0.1)
    max_timeout_s: float = bounded(600.0, 1)
    #: at most max_timeout_s (checked in `_check_across`); a submit may ask for no less than 1 s either
    default_timeout_s: float = bounded(60.0, 1)
    max_request_bytes: int = bounded(1024 * 1024, 1024)
    max_batch: int = bounded(1000, 1)


@dataclass(frozen=True)
class CrawlConfig:
    #: the largest max_pages a crawl may ask for (a crawl's own max_pages is at most 1,000,000)
    max_pages: int = bounded(10_000, 1, 1_000_000)
    #: the upper bounds keep the per-host figures within PostgreSQL's int of the shared gate
    per_host_concurrency: int = bounded(4, 1, 1000)
    per_host_delay_ms: int = bounded(0, 0, DAY_S * 1000)
    #: PostgreSQL: a request's hold on one of a host's shared slots, renewed every third of it while
    #: the request runs; a node that dies frees its slots this long after its last renewal at most
    host_lease_s: float = bounded(30.0, 1, 3600)
    #: on a store several nodes share (PostgreSQL), per-host limits hold across all nodes (two
    #: statements per request); false keeps them per node (each node's limits apply to its own requests only)
    shared_gate: bool = True


@dataclass(frozen=True)
class WebhooksConfig:
    #: HMAC-SHA256 key of X-Litejobs-Signature; empty means deliveries are not signed
    secret: str = ""
    #: per delivery attempt: connect, send, and the receiver's answer
    timeout_s: float = bounded(10.0, 0.1, 3600)
    #: retries after a failed attempt (network error, timeout, 5xx, 408, 429); other answers are final
    max_retries: int = bounded(5, 0, 100)
    backoff_base_s: float = bounded(2.0, 0, 30 * DAY_S)
    backoff_max_s: float = bounded(300.0, 0, 30 * DAY_S)
    #: deliveries in flight at once
    concurrency: int = bounded(4, 1, 1000)


@dataclass(frozen=True)
class AiConfig:
    #: an OpenAI-compatible API (e.g. "http://127.0.0.1:8080/v1"); empty: prompts fall back to markdown
    base_url: str = ""
    model: str = ""
    api_key: str = ""
    timeout_s: float = bounded(30.0, 0.1)


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


def _check_across(name: str, section: Any) -> None:
    """Rules that tie two keys of one section together."""
    if isinstance(section, LimitsConfig) and section.default_timeout_s > section.max_timeout_s:
        raise ConfigError(
            f"{name}.default_timeout_s: {section.default_timeout_s!r} is above "
            f"{name}.max_timeout_s ({section.max_timeout_s!r})"
        )


def _check_keys(where: str, keys: tuple[str, ...]) -> None:
    """Refuse a key no client could present: HTTP strips a header value's surrounding whitespace."""
    for number, key in enumerate(keys, 1):
        if not key.strip():
            # it counts as keys set, so every request would be a 401
            raise ConfigError(f"{where}: an empty or blank key can never be presented; remove it")
        if key != key.strip():  # named by its place: a key is never logged
            raise ConfigError(
                f"{where}: key {number} has surrounding whitespace, which a header loses, "
                "so it could never be presented; remove the whitespace"
            )


def _build_section(name: str, cls: type, values: Mapping[str, Any]) -> Any:
    if cls is KindsConfig:
        return KindsConfig.from_table(values)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key [{name}] {unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, value in values.items():
        where = f"{name}.{key}"
        coerced = coerce(where, hints[key], value)
        check_range(where, known[key], coerced)
        if where == "server.log_format" and coerced not in ("text", "json"):
            raise ConfigError(f"{where}: expected 'text' or 'json', got {coerced!r}")
        if where == "auth.keys":
            _check_keys(where, coerced)
        if where == "fetch.blocked_networks":
            for cidr in coerced:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ConfigError(f"{where}: {cidr!r} is not an address range like 10.0.0.0/8") from None
        kwargs[key] = coerced
    section = cls(**kwargs)
    _check_across(name, section)
    return section


def _env_setting(var: str, sections: Mapping[str, type]) -> tuple[str, str] | None:
    """(section, key) of a `LITEJOBS_<SECTION>_<KEY>` server setting; None for a variable that is
    not one (see the module docstring). A known section's unknown key is refused, naming the variable."""
    if not var.startswith(ENV_PREFIX) or var in NOT_SETTINGS:
        return None
    section, _, key = var[len(ENV_PREFIX) :].lower().partition("_")
    if section not in sections:
        return None
    if not key:
        raise ConfigError(f"unknown environment setting {var}: expected {ENV_PREFIX}{section.upper()}_<KEY>")
    known = [f.name for f in dataclasses.fields(sections[section])]  # none: [kinds] takes any name
    if known and key not in known:
        raise ConfigError(f"unknown environment setting {var}: no key {key} in [{section}] (known: {', '.join(known)})")
    return section, key


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
        setting = _env_setting(var, sections)
        if setting is not None:
            section, key = setting
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
