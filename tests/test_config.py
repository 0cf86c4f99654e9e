"""Configuration: the example file documents every key; files, env and flags layer; bad input stops."""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path

import pytest

from litejobs.config import Config, load_config
from litejobs.errors import ConfigError
from tests.support import PYTHON, ROOT


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
        ("", {"LITEJOBS_NOPE_X": "1"}, "unknown environment setting LITEJOBS_NOPE_X"),
        ("[server]\nhost = '0.0.0.0'\n", {}, "not loopback and no [auth] keys"),
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


def test_a_public_host_with_keys_or_allow_anonymous_is_accepted(tmp_path: Path) -> None:
    assert load_config(None, env={"LITEJOBS_SERVER_HOST": "0.0.0.0", "LITEJOBS_AUTH_KEYS": "k"}).auth.keys == ("k",)
    open_config = load_config(None, env={"LITEJOBS_SERVER_HOST": "0.0.0.0", "LITEJOBS_AUTH_ALLOW_ANONYMOUS": "true"})
    assert not open_config.allow_private_networks  # a public server reaches no private address by default


def test_serve_stops_at_start_on_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[fetch]\nmax_body_bytez = 1\n")
    proc = subprocess.run(
        [PYTHON, "-m", "litejobs", "serve", "--config", str(path)], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert proc.returncode == 2
    assert "unknown key [fetch] max_body_bytez" in proc.stderr


def test_version_flag() -> None:
    proc = subprocess.run([PYTHON, "-m", "litejobs", "--version"], capture_output=True, text=True, timeout=30)
    assert proc.stdout.startswith("litejobs 0.")
