"""Configuration: the example file documents every key; files, env and flags layer; bad input stops."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tomllib
import typing
from pathlib import Path

import pytest

from litejobs.config import Config, load_config
from litejobs.errors import ConfigError
from tests.support import PYTHON, ROOT, Http, ServerProcess


def test_the_example_documents_every_key_with_its_default() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    text = (ROOT / "config.example.toml").read_text()
    defaults = Config()
    for section in dataclasses.fields(Config):
        current = getattr(defaults, section.name)
        for key in dataclasses.fields(current):
            default = getattr(current, key.name)
            if default is None:  # unset by default: documented as a commented-out line
                assert f"# {key.name} = " in text, f"[{section.name}] {key.name} is not documented"
                continue
            assert key.name in example[section.name], f"[{section.name}] {key.name} is not documented"
            value = example[section.name][key.name]
            assert (tuple(value) if isinstance(value, list) else value) == default, (section.name, key.name)


def test_the_example_loads_as_it_is() -> None:
    assert load_config(ROOT / "config.example.toml", env={}) == Config()


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[queue]\nconcurrency = 3\nmax_attempts = 5\n[store]\npath = "a.db"\n')
    config = load_config(
        path,
        env={"LITEJOBS_QUEUE_CONCURRENCY": "7", "LITEJOBS_AUTH_KEYS": "k1,k2"},
        overrides={"store": {"path": "b.db"}, "server": {"port": None}},
    )
    assert config.queue.concurrency == 7
    assert config.queue.max_attempts == 5
    assert config.store.path == "b.db"
    assert config.server.port == 8000
    assert config.auth.keys == ("k1", "k2")


def test_litejobs_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 9001\n")
    assert load_config(None, env={"LITEJOBS_CONFIG": str(path)}).server.port == 9001


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[queue]\nconcurency = 3\n", {}, "unknown key [queue] concurency"),
        ("[queues]\nx = 1\n", {}, "unknown section [queues]"),
        ("[queue]\nconcurrency = 'many'\n", {}, "queue.concurrency: expected an integer"),
        ("[queue]\nconcurrency = 0\n", {}, "queue.concurrency: 0 is out of range"),
        ("[queue]\nenabled = 'perhaps'\n", {}, "queue.enabled: expected true or false"),
        ("", {"LITEJOBS_FETCH_TIMEOUT_S": "soon"}, "fetch.timeout_s: expected a number"),
        ("", {"LITEJOBS_QUEUE_CONCURENCY": "3"}, "unknown environment setting LITEJOBS_QUEUE_CONCURENCY"),
        ("", {"LITEJOBS_QUEUE": "3"}, "unknown environment setting LITEJOBS_QUEUE"),
        ("[queue]\nlease_s = inf\n", {}, "queue.lease_s: expected a finite number"),
        ("", {"LITEJOBS_QUEUE_LEASE_S": "inf"}, "queue.lease_s: expected a finite number"),
        ("", {"LITEJOBS_QUEUE_LEASE_S": "1e400"}, "queue.lease_s: expected a finite number"),
        ("[queue]\nlease_s = 1" + "0" * 400 + "\n", {}, "queue.lease_s: expected a finite number"),
        ("", {"LITEJOBS_LIMITS_SYNC_TIMEOUT_S": "nan"}, "limits.sync_timeout_s: expected a finite number"),
        ("", {"LITEJOBS_LIMITS_DEFAULT_TIMEOUT_S": "-1"}, "limits.default_timeout_s: -1.0 is out of range"),
        ("", {"LITEJOBS_LIMITS_DEFAULT_TIMEOUT_S": "700"}, "limits.default_timeout_s: 700.0 is above limits.max"),
        ("", {"LITEJOBS_STORE_SWEEP_INTERVAL_S": "0"}, "store.sweep_interval_s: 0.0 is out of range"),
        ("", {"LITEJOBS_STORE_RETENTION_S": "1e300"}, "store.retention_s: 1e\\+300 is out of range"),
        ("[limits]\nmax_batch = 0\n", {}, "limits.max_batch: 0 is out of range"),
        ("[queue]\nmax_attempts = 21\n", {}, "queue.max_attempts: 21 is out of range"),
        ("[crawl]\nmax_pages = 2000000\n", {}, "crawl.max_pages: 2000000 is out of range"),
        ("[server]\nhost = '0.0.0.0'\n", {}, "not loopback and no [auth] keys"),
        ('[auth]\nkeys = ["k1", " abc "]\n', {}, "auth.keys: key 2 has surrounding whitespace"),
        ('[auth]\nkeys = ["abc\\t"]\n', {}, "auth.keys: key 1 has surrounding whitespace"),
        ("[queue\n", {}, "not valid TOML"),
    ],
)
def test_bad_configuration_is_refused_with_the_key_named(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, env=env)


def _numeric_keys() -> list[tuple[str, str, type]]:
    """(section, key, type) of every int and float setting."""
    found = []
    for section in dataclasses.fields(Config):
        current = getattr(Config(), section.name)
        hints = typing.get_type_hints(type(current))
        found += [
            (section.name, k.name, hints[k.name]) for k in dataclasses.fields(current) if hints[k.name] in (int, float)
        ]
    return found


@pytest.mark.parametrize(("section", "key", "kind"), _numeric_keys())
def test_no_numeric_setting_takes_a_negative_or_non_finite_value(section: str, key: str, kind: type) -> None:
    where = f"{section}.{key}"
    variable = f"LITEJOBS_{section.upper()}_{key.upper()}"
    for bad in ["-1", "nan", "inf", "-inf"] if kind is float else ["-1"]:
        with pytest.raises(ConfigError, match=rf"^{re.escape(where)}: "):
            load_config(None, env={variable: bad})


@pytest.mark.parametrize(
    "setting",
    ["store.max_db_mb", "auth.rate_per_s", "queue.max_recoveries", "webhooks.max_retries", "fetch.max_redirects"],
)
def test_zero_still_means_off_where_the_example_says_so(setting: str) -> None:
    section, key = setting.split(".")
    config = load_config(None, env={f"LITEJOBS_{section.upper()}_{key.upper()}": "0"})
    assert getattr(getattr(config, section), key) == 0


def test_variables_that_are_not_server_settings_are_left_alone() -> None:
    env = {"LITEJOBS_URL": "http://127.0.0.1:9", "LITEJOBS_API_KEY": "alice", "LITEJOBS_FUZZ_EXAMPLES": "500"}
    assert load_config(None, env=env) == Config()


def test_serve_starts_with_the_client_variables_of_the_readme_exported(tmp_path: Path) -> None:
    client_env = {"LITEJOBS_URL": "http://127.0.0.1:9", "LITEJOBS_API_KEY": "alice"}
    server = ServerProcess(tmp_path / "env.db", env=client_env)
    try:
        health = server.http.get("/healthz").status
    finally:
        exit_code = server.terminate()
    assert health == 200
    assert exit_code == 0


def test_a_public_host_with_keys_or_allow_anonymous_is_accepted(tmp_path: Path) -> None:
    assert load_config(None, env={"LITEJOBS_SERVER_HOST": "0.0.0.0", "LITEJOBS_AUTH_KEYS": "k"}).auth.keys == ("k",)
    open_config = load_config(None, env={"LITEJOBS_SERVER_HOST": "0.0.0.0", "LITEJOBS_AUTH_ALLOW_ANONYMOUS": "true"})
    assert not open_config.allow_private_networks  # a public server reaches no private address by default


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[fetch]\nmax_body_bytez = 1\n", {}, "unknown key [fetch] max_body_bytez"),
        ("", {"LITEJOBS_QUEUE_CONCURENCY": "3"}, "unknown environment setting LITEJOBS_QUEUE_CONCURENCY"),
        ("", {"LITEJOBS_QUEUE_LEASE_S": "inf"}, "queue.lease_s: expected a finite number, got 'inf'"),
        # an empty key can never be presented (it made every request 401)
        ('[auth]\nkeys = [""]\n', {}, "auth.keys: an empty or blank key"),
        ('[auth]\nkeys = ["k1", "   "]\n', {}, "auth.keys: an empty or blank key"),
        # a header loses a value's surrounding spaces, so this key could never be sent in one
        ('[auth]\nkeys = [" abc "]\n', {}, "auth.keys: key 1 has surrounding whitespace"),
    ],
)
def test_serve_stops_at_start_on_a_bad_config(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    proc = subprocess.run(
        [PYTHON, "-m", "litejobs", "serve", "--config", str(path), "--port", "0", "--db", str(tmp_path / "c.db")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    assert proc.returncode == 2
    assert f"configuration error: {message}" in proc.stderr


def test_keys_from_the_environment_are_the_trimmed_list_items_a_header_can_carry(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "keys.db", env={"LITEJOBS_AUTH_KEYS": " abc , def "})
    try:
        by_header = server.http.get("/v1/jobs", headers={"X-API-Key": "abc"}).status
        by_bearer = server.http.get("/v1/jobs", headers={"Authorization": "Bearer def"}).status
        untrimmed = server.http.get("/v1/jobs?api_key=%20abc%20").status
    finally:
        server.terminate()
    assert (by_header, by_bearer, untrimmed) == (200, 200, 401)


def test_version_flag() -> None:
    proc = subprocess.run([PYTHON, "-m", "litejobs", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.stdout.startswith("litejobs 0.")


def test_the_examples_plugin_line_loads_as_its_comment_says(tmp_path: Path) -> None:
    """The commented [kinds] line, run with the `litejobs` command from a checkout, as its comment says."""
    kinds = (ROOT / "config.example.toml").read_text().partition("\n[kinds]\n")[2]
    name, target = re.findall(r'^# (\w+) = "([\w.]+:\w+)"$', kinds, re.MULTILINE)[0]
    told = re.search(r"`((?:\w+=\S+ )*)litejobs serve`", kinds)  # e.g. `PYTHONPATH=. litejobs serve`
    path = tmp_path / "c.toml"
    path.write_text(f'[kinds]\n{name} = "{target}"\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(pair.split("=", 1) for pair in (told.group(1).split() if told else []))
    command = [str(Path(PYTHON).parent / "litejobs"), "serve", "--config", str(path), "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--db", str(tmp_path / "c.db")], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    try:
        output = []
        for _ in range(100):  # a start that fails ends the output: readline then answers ""
            output.append(proc.stdout.readline().decode())
            if not output[-1] or "listening on" in output[-1]:
                break
        address = re.search(r"listening on (http://\S+)", output[-1])
        assert address, "".join(output)
        accepted = Http(address.group(1)).post("/v1/jobs", {"kind": name, "input": {"url": "http://127.0.0.1:9/"}})
        assert accepted.status == 202, accepted.body
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
