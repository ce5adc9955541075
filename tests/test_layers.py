"""Data flows one way: no import circle between tlsearch's packages, and the layers keep out what they must
not load (analysis: torch and Ray; training: Ray and W&B), read from the source (imports inside functions
count too)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "tlsearch"
FORBIDDEN = {"analysis": {"torch", "ray", "alignn", "dgl"}, "training": {"ray", "wandb"}, "data": {"ray", "wandb"},
             "graphs": {"ray", "wandb"}}


def _imports() -> dict[str, dict[str, set[str]]]:
    """package -> {"tlsearch": tlsearch packages it imports, "other": top-level third-party modules}."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"tlsearch": set(), "other": set()})
    for f in PKG.rglob("*.py"):
        pkg = f.relative_to(PKG).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                parts = name.split(".")
                if parts[0] == "tlsearch" and len(parts) > 1 and parts[1] != pkg:
                    out[pkg]["tlsearch"].add(parts[1])
                elif parts[0] != "tlsearch":
                    out[pkg]["other"].add(parts[0])
    return out


def test_no_import_circle_between_packages():
    graph = {k: v["tlsearch"] for k, v in _imports().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import circle: {' -> '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_layers_keep_out_what_they_must_not_load():
    imports = _imports()
    bad = {pkg: sorted(imports[pkg]["other"] & mods) for pkg, mods in FORBIDDEN.items() if imports[pkg]["other"] & mods}
    assert not bad, f"forbidden imports: {bad}"
