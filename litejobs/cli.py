"""The `litejobs` command: serve, and talk to a running server (submit, get, result, cancel, ls, stats)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

from litejobs import __version__
from litejobs.errors import ConfigError, LitejobsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litejobs", description="A self-hosted scraping job server.")
    parser.add_argument("--version", action="version", version=f"litejobs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (API + workers) in this process")
    serve.add_argument("--config", help="TOML config file (default: $LITEJOBS_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--db", help="SQLite file (store.path)")
    serve.add_argument("--log-format", choices=["text", "json"])

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--server", default=os.environ.get("LITEJOBS_URL", "http://127.0.0.1:8000"))
        cmd.add_argument("--api-key", default=os.environ.get("LITEJOBS_API_KEY"))
        return cmd

    submit = client_command("submit", "submit a job for URL")
    submit.add_argument("url")
    submit.add_argument("--kind", default="fetch")
    submit.add_argument("--render", action="store_true", help="render JavaScript (kind render)")
    submit.add_argument("--output", default="markdown", help="comma-separated outputs")
    submit.add_argument("--wait", action="store_true", help="wait and print the result")
    submit.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("get", "show a job"), ("result", "print a job's result"), ("cancel", "cancel a job")):
        cmd = client_command(name, text)
        cmd.add_argument("job_id")
        cmd.add_argument("--json", action="store_true")
    ls = client_command("ls", "list jobs")
    ls.add_argument("--status")
    ls.add_argument("--kind")
    ls.add_argument("--limit", type=int, default=20)
    client_command("stats", "queue figures")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from litejobs.config import load_config
    from litejobs.server import serve

    overrides: dict[str, dict[str, Any]] = {
        "server": {"host": args.host, "port": args.port, "log_format": args.log_format},
        "store": {"path": args.db},
    }
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"litejobs: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
    return EXIT_OK


def _print(data: Any, as_json: bool) -> None:
    if as_json or not isinstance(data, str):
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(data)


def _print_result(client: Any, job: dict[str, Any], as_json: bool) -> int:
    if job["status"] not in ("completed", "partial"):
        _print(job if as_json else f"{job['job_id']} {job['status']}: {job.get('error')}", as_json)
        return EXIT_FAILED
    result = client.result(job["job_id"])
    outputs = result["outputs"]
    if as_json:
        _print(result, True)
    else:
        for name in ("markdown", "text", "html"):
            if name in outputs:
                print(outputs[name])
                break
        else:
            _print(outputs, True)
    return EXIT_OK


def _client_command(args: argparse.Namespace) -> int:
    from litejobs.client import Client

    client = Client(args.server, args.api_key)
    if args.command == "submit":
        kind = "render" if args.render else args.kind
        job = client.submit(kind, {"url": args.url, "output": args.output.split(",")})
        if not args.wait:
            _print(job if args.json else job["job_id"], args.json)
            return EXIT_OK
        return _print_result(client, client.wait(job["job_id"]), args.json)
    if args.command == "get":
        job = client.get(args.job_id)
        _print(job if args.json else f"{job['job_id']} {job['kind']} {job['status']}", args.json)
        return EXIT_FAILED if job["status"] in ("failed", "cancelled") else EXIT_OK
    if args.command == "result":
        return _print_result(client, client.get(args.job_id), args.json)
    if args.command == "cancel":
        job = client.cancel(args.job_id)
        _print(job if args.json else f"{job['job_id']} {job['status']}", args.json)
        return EXIT_OK
    if args.command == "ls":
        for count, job in enumerate(client.list(args.status, args.kind, limit=min(args.limit, 1000))):
            if count >= args.limit:
                break
            url = job["input"].get("url", "")
            print(f"{job['job_id']}  {job['kind']:<8} {job['status']:<10} {job['created_at']}  {url}")
        return EXIT_OK
    _print(client.stats(), True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        return _serve(args)
    from litejobs.client import ServerUnreachable

    try:
        return _client_command(args)
    except ServerUnreachable as exc:
        print(f"litejobs: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except LitejobsError as exc:
        print(f"litejobs: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
