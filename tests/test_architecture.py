"""The shape of the house: import-linter's contracts (pyproject.toml), no import cycle between modules, and a
repository that explains itself without files outside it."""

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    # lint-imports is import-linter's own CLI; it reads [tool.importlinter] from pyproject.toml.
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint) if lint.exists() else "lint-imports"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "KEPT" in proc.stdout


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter[0]
                counter[0] += 1
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("splavu_ray")
    modules = {m for m in graph.modules if m.startswith("splavu_ray")}
    assert len(modules) > 40
    assert _cycles(graph, modules) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph, {"p.a", "p.b", "p.c"}) == [["p.a", "p.b"]]


def test_nothing_points_outside_the_repository():
    # Our method and design are explained in docs/ (method.md, architecture.md), never in files a clone lacks.
    files = [p for folder in ("splavu_ray", "docs", "tests", "benchmarks", "cluster", "sweeps") for p in
             (REPO / folder).rglob("*") if p.suffix in (".py", ".md", ".yaml")] + [REPO / "README.md"]
    here = Path(__file__).resolve()
    bad = [str(p.relative_to(REPO)) for p in files if p.resolve() != here and
           any(name in p.read_text(errors="replace") for name in ("METHOD.md", "ENGINEERING.md", "STYLE.md"))]
    assert bad == []
    assert (REPO / "docs" / "method.md").is_file() and (REPO / "docs" / "architecture.md").is_file()
