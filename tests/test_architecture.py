"""The import layers of ARCHITECTURE.md, held against the code: a lower layer never imports a higher one.

Imports under `if TYPE_CHECKING:` are annotations only and do not count. A module missing from LAYERS
fails the test: a new module must be placed in the table (and in ARCHITECTURE.md) on purpose.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "litejobs"

#: module (or package prefix ending in ".") → layer; the longest matching entry wins
LAYERS: dict[str, int] = {
    # 0 leaves: pure, no I/O of their own
    "litejobs": 0,
    "litejobs.errors": 0,
    "litejobs.jobs": 0,
    "litejobs.config": 0,
    "litejobs.config_values": 0,
    "litejobs.fields": 0,
    "litejobs.extract": 0,
    "litejobs.charsets": 0,
    "litejobs.netpolicy": 0,
    "litejobs.urls": 0,
    "litejobs.sitemaps": 0,
    "litejobs.render_request": 0,
    "litejobs.politeness": 0,
    "litejobs.events": 0,
    "litejobs.jsontext": 0,
    "litejobs.ids": 0,
    # 1 resources: the store, the network, the browser, files, logs
    "litejobs.store.": 1,
    "litejobs.store": 1,
    "litejobs.files": 1,
    "litejobs.fetcher": 1,
    "litejobs.fetch_body": 1,
    "litejobs.fetch_cookies": 1,
    "litejobs.robots": 1,
    "litejobs.shared_politeness": 1,
    "litejobs.ai": 1,
    "litejobs.logs": 1,
    "litejobs.browser": 1,
    "litejobs.browser_actions": 1,
    "litejobs.browser_errors": 1,
    "litejobs.browser_guard": 1,
    "litejobs.browser_render": 1,
    "litejobs.chromium": 1,
    "litejobs.egress_proxy": 1,
    "litejobs.pyppeteer_fixes": 1,
    "litejobs.pyppeteer_fixes.": 1,
    # 2 work: job kinds, reached through a typed KindContext
    "litejobs.kinds": 2,
    "litejobs.kinds.": 2,
    "litejobs.plugins": 2,
    # 3 runtime
    "litejobs.worker": 3,
    "litejobs.leases": 3,
    "litejobs.promotion": 3,
    "litejobs.job_context": 3,
    "litejobs.worker_ids": 3,
    "litejobs.sweeper": 3,
    "litejobs.webhooks": 3,
    "litejobs.metrics": 3,
    "litejobs.engine": 3,
    # 4 edge
    "litejobs.api": 4,
    "litejobs.api.": 4,
    # 5 root
    "litejobs.app": 5,
    # 6 entry
    "litejobs.server": 6,
    "litejobs.cli": 6,
    "litejobs.__main__": 6,
}

#: the SDK stands apart: it talks HTTP and shares only these with the server
CLIENT_MAY_IMPORT = ("litejobs", "litejobs.jobs", "litejobs.errors", "litejobs.client")

#: the worker publishes changes; app.py subscribes webhooks and metrics to them
FORBIDDEN = {"litejobs.worker": ("litejobs.webhooks", "litejobs.metrics")}

SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.I | re.S)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int | None:
    best: tuple[int, int] | None = None
    for key, layer in LAYERS.items():
        matches = name == key or (key.endswith(".") and name.startswith(key))
        if matches and (best is None or len(key) > best[0]):
            best = (len(key), layer)
    return None if best is None else best[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(name: str, path: Path) -> set[str]:
    """litejobs modules that `name` imports when it runs (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                # `from litejobs.kinds import fetch` imports the submodule litejobs.kinds.fetch
                found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules())
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])
                elif hasattr(child, "body") and isinstance(child.body, list):
                    visit(child.body)

    visit(tree.body)
    return {imported for imported in found if imported == "litejobs" or imported.startswith("litejobs.")}


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules() if layer_of(name) is None and not name.startswith("litejobs.client")]
    assert not unplaced, f"place these modules in LAYERS (and ARCHITECTURE.md): {unplaced}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for name, path in modules().items():
        if name.startswith("litejobs.client"):
            continue
        mine = layer_of(name)
        for imported in runtime_imports(name, path):
            theirs = layer_of(imported)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} (layer {mine}) imports {imported} (layer {theirs})")
    assert not upward, "\n".join(upward)


def test_the_client_imports_only_jobs_and_errors() -> None:
    strays = [
        f"{name} imports {imported}"
        for name, path in modules().items()
        if name.startswith("litejobs.client")
        for imported in runtime_imports(name, path)
        if not (imported in CLIENT_MAY_IMPORT or imported.startswith("litejobs.client."))
    ]
    assert not strays, strays


def test_the_worker_never_imports_webhooks_or_metrics() -> None:
    for name, banned in FORBIDDEN.items():
        imported = runtime_imports(name, modules()[name])
        assert not imported & set(banned), f"{name} imports {imported & set(banned)}"


def test_only_the_store_speaks_sql() -> None:
    speakers = []
    for name, path in modules().items():
        if name == "litejobs.store" or name.startswith("litejobs.store."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                speakers.append(f"{name}:{node.lineno}: {node.value[:60]!r}")
    assert not speakers, speakers


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The walker itself: runtime imports inside functions count, TYPE_CHECKING ones do not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from litejobs.cli import main\n"
        "def later():\n    from litejobs.app import App\n    return App\n"
    )
    found = runtime_imports("litejobs.jobs", sample)
    assert "litejobs.app" in found and "litejobs.cli" not in found
    assert layer_of("litejobs.app") > layer_of("litejobs.jobs")  # type: ignore[operator]
    assert "litejobs.store" in runtime_imports("litejobs.engine", modules()["litejobs.engine"])
    assert "litejobs.app" not in runtime_imports("litejobs.api.http", modules()["litejobs.api.http"])
    assert SQL.search("SELECT id FROM jobs") and not SQL.search("select the fastest option")
