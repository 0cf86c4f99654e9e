"""The `litejobs` command: `serve`, and the client commands on the SDK (submit, get, result, cancel,
ls, stats, tail).

Exit codes: 0 the job completed (or partial) or the command did its work; 1 the job failed or was
cancelled, or the server refused the request; 2 a usage error (a bad command line, or input the
server rejects as invalid: 422); 3 the server could not be reached (a wait rides out a restart first);
4 `result` of a job that has not ended yet (without --wait). Ctrl-C ends `tail` with 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

from litejobs import __version__
from litejobs.errors import ConfigError, LitejobsError, StorageFull, UnsupportedKind, ValidationFailed

if TYPE_CHECKING:
    from litejobs.client import AsyncClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: `result` of a job still waiting or active: a script can tell it from a failed one (1) and ask again
EXIT_NOT_ENDED = 4
#: the reader of stdout went away (`litejobs result JOB | head`): 128 + SIGPIPE, what a shell
#: reports for a Unix tool that SIGPIPE ended (Python ignores the signal and raises instead)
EXIT_CLOSED_PIPE = 141
SUCCEEDED = ("completed", "partial")


def _server_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value


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

    migrate = sub.add_parser("migrate", help="copy a SQLite database into an empty PostgreSQL one")
    migrate.add_argument("--from", dest="source", required=True, metavar="SQLITE_PATH")
    migrate.add_argument("--to", dest="target", required=True, metavar="POSTGRESQL_URL")
    migrate.add_argument("--files-dir", metavar="DIR", help="the SQLite side's files_dir (default: SQLITE_PATH.files)")
    migrate.add_argument(
        "--keep-files-in-folder",
        action="store_true",
        help="the nodes will share a files_dir: copy the files' records only, not their bytes",
    )

    def client_command(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        default_url = os.environ.get("LITEJOBS_URL", "http://127.0.0.1:8000")
        cmd.add_argument("--server", type=_server_url, default=default_url, help="default: $LITEJOBS_URL")
        cmd.add_argument("--api-key", default=os.environ.get("LITEJOBS_API_KEY"), help="default: $LITEJOBS_API_KEY")
        cmd.add_argument("--json", action="store_true", help="print the API's JSON")
        return cmd

    submit = client_command("submit", "submit a job for URL")
    submit.add_argument("url")
    submit.add_argument("--kind", default="fetch")
    submit.add_argument("--render", action="store_true", help="render JavaScript in Chromium (input.render_js)")
    submit.add_argument("--output", help="comma-separated outputs (default: the server's, markdown)")
    submit.add_argument("--max-attempts", type=int, metavar="N")
    submit.add_argument("--wait", action="store_true", help="wait, showing progress, then print the result")
    client_command("get", "show a job").add_argument("job_id")
    result = client_command("result", "print a job's result (markdown; --json for all of it)")
    result.add_argument("job_id")
    result.add_argument("--wait", action="store_true", help="wait for the job to end (else exit 4 if it has not)")
    client_command("cancel", "cancel a job").add_argument("job_id")
    ls = client_command("ls", "list jobs, newest first")
    ls.add_argument("--status")
    ls.add_argument("--kind")
    ls.add_argument("--limit", type=int, default=20)
    client_command("stats", "queue figures")
    tail = client_command("tail", "follow events: of JOB_ID until it ends, or of all jobs until Ctrl-C")
    tail.add_argument("job_id", nargs="?")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from litejobs.config import load_config
    from litejobs.server import run
    from litejobs.store import StoreUnavailable

    overrides: dict[str, dict[str, Any]] = {
        "server": {"host": args.host, "port": args.port, "log_format": args.log_format},
        "store": {"path": args.db},
    }
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"litejobs: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a folder, a file it may not read
        print(f"litejobs: cannot read the config file {args.config}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run(config)
    except ConfigError as exc:  # found while building the app: a plugin that cannot be loaded, say
        print(f"litejobs: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StoreUnavailable, StorageFull) as exc:  # the database: missing, refused, not one, too new, full
        print(f"litejobs: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    if not args.target.startswith(("postgresql://", "postgres://")):
        print("litejobs: --to must be a postgresql:// URL", file=sys.stderr)
        return EXIT_USAGE
    try:
        from litejobs.store.transfer import copy_sqlite_to_postgres

        file_bytes = not args.keep_files_in_folder
        copy = copy_sqlite_to_postgres(args.source, args.target, files_dir=args.files_dir, file_bytes=file_bytes)
        copied = asyncio.run(copy)
    except LitejobsError as exc:  # nothing was committed: the copy is one transaction
        print(f"litejobs: migrate failed, nothing was copied: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        print(f"litejobs: migrate failed, nothing was copied: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for table, rows in copied.rows.items():
        print(f"{table}: {rows} rows")
    folder = args.files_dir or f"{args.source}.files"
    if not file_bytes:
        print(f"copied; now move {folder} to a folder every node mounts, set [store] files_dir to it and url to that")
        print("PostgreSQL URL, and start the nodes")
        return EXIT_OK
    print(f"file bytes: {copied.files} files, {copied.file_bytes} bytes moved into the database from {folder}")
    from litejobs.files import MAX_DB_FILE_BYTES

    too_large = f"over {MAX_DB_FILE_BYTES // 2**20} MiB, left in the folder"
    left_out = [("missing from the folder", copied.missing), (too_large, copied.too_large)]
    for label, names in left_out:
        if names:
            shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            print(f"{len(names)} files {label} (they will answer 404): {shown}")
    print("copied; now set [store] url to that PostgreSQL URL (leave files_dir unset: files are in the database)")
    print("and start the nodes")
    return EXIT_OK


def _dump(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _show(data: Any, as_json: bool, line: str) -> None:
    if as_json:
        _dump(data)
    else:
        print(line)


def _describe(job: dict[str, Any], bar: bool = False) -> str:
    """`job_… active [#####.....]  50% rendering` — the bar on a terminal only."""
    text = f"{job['job_id']} {job['status']}"
    progress = job.get("progress") or {}
    if isinstance(progress.get("progress"), int | float):
        share = max(0.0, min(1.0, float(progress["progress"])))
        filled = round(share * 20)
        text += (f" [{'#' * filled}{'.' * (20 - filled)}]" if bar else "") + f" {share:4.0%}"
    if progress.get("message"):
        text += f" {progress['message']}"
    if job.get("error"):
        text += f" {job['error'].get('code')}: {job['error'].get('message')}"
    return text


class StatusLine:
    """A waited-for job on stderr: one line redrawn in place on a terminal, else a line per status."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.status: str | None = None

    def update(self, job: dict[str, Any]) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + _describe(job, bar=True))
        elif job["status"] != self.status:
            self.stream.write(_describe(job) + "\n")
        self.stream.flush()
        self.status = job["status"]

    def close(self) -> None:
        if self.tty and self.status is not None:
            self.stream.write("\n")
            self.stream.flush()


def _text_of(outputs: dict[str, Any]) -> str | None:
    return next((outputs[name] for name in ("markdown", "text", "html") if isinstance(outputs.get(name), str)), None)


async def _print_result(client: AsyncClient, job: dict[str, Any], as_json: bool) -> int:
    """The result of a finished job on stdout (markdown, or all of it as JSON), or why there is none."""
    if job["status"] not in SUCCEEDED:
        if as_json:
            _dump(job)
        ended = job["status"] in ("failed", "cancelled")
        print(f"litejobs: {_describe(job)}" + ("" if ended else ": not ended yet (use --wait)"), file=sys.stderr)
        return EXIT_FAILED if ended else EXIT_NOT_ENDED
    result = await client.result(job["job_id"])
    if "pages" in result:  # a crawl: every page, not only the first request's worth
        result["pages"] = [page async for page in client.pages(job["job_id"], limit=1000)]
        result["next_offset"] = None
    if as_json:
        _dump(result)
        return EXIT_OK
    text = _text_of(result["outputs"])
    if text is not None:
        print(text)
    elif "pages" not in result:
        _dump(result["outputs"])
    for page in result.get("pages", []):
        print(f"<!-- {page.get('url')} -->")
        print(_text_of(page) or json.dumps(page, ensure_ascii=False))
    return EXIT_OK


async def _submit(client: AsyncClient, args: argparse.Namespace) -> int:
    job_input: dict[str, Any] = {"url": args.url}
    if args.output:
        job_input["output"] = [name.strip() for name in args.output.split(",") if name.strip()]
    if args.render:
        job_input["render_js"] = True
    options = {} if args.max_attempts is None else {"max_attempts": args.max_attempts}
    job = await client.submit(args.kind, job_input, **options)
    if not args.wait:
        _show(job, args.json, job["job_id"])
        return EXIT_OK
    line = StatusLine(sys.stderr)
    try:
        job = await client.wait(job["job_id"], on_change=line.update)
    finally:
        line.close()
    return await _print_result(client, job, args.json)


async def _get(client: AsyncClient, args: argparse.Namespace) -> int:
    job = await client.get(args.job_id)
    _show(job, args.json, f"{_describe(job)} kind={job['kind']} attempts={job['attempts']}")
    return EXIT_OK if job["status"] not in ("failed", "cancelled") else EXIT_FAILED


async def _result(client: AsyncClient, args: argparse.Namespace) -> int:
    job = await (client.wait(args.job_id) if args.wait else client.get(args.job_id))
    return await _print_result(client, job, args.json)


async def _cancel(client: AsyncClient, args: argparse.Namespace) -> int:
    job = await client.cancel(args.job_id)
    _show(job, args.json, _describe(job))
    return EXIT_OK


async def _ls(client: AsyncClient, args: argparse.Namespace) -> int:
    jobs: list[dict[str, Any]] = []
    async with contextlib.aclosing(client.list(args.status, args.kind, limit=max(1, min(args.limit, 1000)))) as found:
        async for job in found:
            if len(jobs) >= args.limit:
                break
            jobs.append(job)
    if args.json:
        _dump(jobs)
        return EXIT_OK
    for job in jobs:
        url = job["input"].get("url", "")
        print(f"{job['job_id']}  {job['kind']:<8} {job['status']:<10} {job['created_at']}  {url}")
    return EXIT_OK


async def _stats(client: AsyncClient, args: argparse.Namespace) -> int:
    _dump(await client.stats())
    return EXIT_OK


async def _tail(client: AsyncClient, args: argparse.Namespace) -> int:
    last: dict[str, Any] = {}
    async with contextlib.aclosing(client.events(args.job_id)) as events:
        async for event in events:
            last = event.job
            if args.json:
                print(json.dumps(last, ensure_ascii=False), flush=True)
            else:
                url = last["input"].get("url", "")
                print(f"{last['updated_at']} {event.type:<8} {_describe(last)} {url}", flush=True)
    return EXIT_OK if last.get("status") in SUCCEEDED else EXIT_FAILED


COMMANDS: dict[str, Callable[[AsyncClient, argparse.Namespace], Awaitable[int]]] = {
    "submit": _submit, "get": _get, "result": _result, "cancel": _cancel, "ls": _ls, "stats": _stats, "tail": _tail,
}  # fmt: skip


async def _run_client_command(args: argparse.Namespace) -> int:
    from litejobs.client import AsyncClient

    async with AsyncClient(args.server, args.api_key) as client:
        return await COMMANDS[args.command](client, args)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run_command(argv)
        sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's exit
    except BrokenPipeError:
        # the reader closed the pipe: stop quietly, as Unix tools do. Python's own advice: point
        # stdout at /dev/null, or the interpreter's last flush of it fails again, with a message
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_CLOSED_PIPE
    return code


def _run_command(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "serve":
        return _serve(args)
    if args.command == "migrate":
        return _migrate(args)
    from litejobs.client import ServerUnreachable

    try:
        return asyncio.run(_run_client_command(args))
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "tail" else EXIT_INTERRUPTED
    except ServerUnreachable as exc:
        print(f"litejobs: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ValidationFailed, UnsupportedKind) as exc:
        print(f"litejobs: {exc.code}: {exc.message}", file=sys.stderr)
        for detail in exc.details:
            print(f"  {detail.get('field')}: {detail.get('problem')}", file=sys.stderr)
        return EXIT_USAGE
    except LitejobsError as exc:
        print(f"litejobs: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
