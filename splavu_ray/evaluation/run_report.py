"""report.html: one self-contained page to look at a run (the blocks are :mod:`splavu_ray.html_report`).

In order: the results table (results.md's rows), the privacy/utility figure (with a point per pixel
baseline when ``python -m splavu_ray.evaluate baselines=[...]`` scored some) and the per-attribute AP figure
(plots.py's, embedded), the feature-inversion grid (eval.inversion), the training curves (every loss the epoch loop recorded, one panel each, the
training phases shaded), validation top-1 and the privacy proxy per epoch, where the wall time went, and
the run's details (adapter, backbone, best epoch, skipped tasks). Sections whose inputs are missing are
left out, so an evaluation-only run (no history) gets a page too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .. import html_report as H
from .plots import per_attribute_figure, privacy_utility_figure
from .report import TableColumn, interval_note, markdown_table

REPORT = "report.html"
# The per-epoch losses of training/loop.py, in this order; other train_l_* keys follow.
LOSS_KEYS = ("train_loss", "train_l_lc", "train_l_t", "train_l_b", "train_l_ar", "train_l_tad", "train_l_ad",
             "val_nt_xent")
VALIDATION_KEYS = {"val_top1": "val top-1 (action, %)", "val_twin_retrieval": "val twin retrieval (privacy proxy, %)"}


def report_path(path: str | Path) -> Path:
    """``path`` itself when it names an .html file, else ``path/report.html`` (a run folder)."""
    path = Path(path)
    return path if path.suffix == ".html" else path / REPORT


def results_rows(results: dict, columns: list[TableColumn]) -> tuple[list[str], list[list[str]]] | None:
    """results.md's table as (header, rows): the same cells, from :func:`markdown_table`. None when the
    results hold no raw/anonymized pair for any column."""
    try:
        md = markdown_table(results, columns)
    except ValueError:
        return None
    lines = [[c.strip() for c in line.strip()[1:-1].split(" | ")] for line in md.splitlines() if line.startswith("|")]
    return lines[0], [r for r in lines[1:] if set("".join(r)) != {"-"}]


def _epochs(history: list[dict]) -> list[float]:
    return [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]


def phase_spans(history: list[dict]) -> list[tuple[float, float, str]]:
    """Consecutive epochs of one training phase as (first - 0.5, last + 0.5, phase); [] without phases
    or with a single one."""
    spans: list[tuple[float, float, str]] = []
    for x, h in zip(_epochs(history), history):
        phase = h.get("phase")
        if phase is None:
            continue
        if spans and spans[-1][2] == phase:
            spans[-1] = (spans[-1][0], x + 0.5, phase)
        else:
            spans.append((x - 0.5, x + 0.5, str(phase)))
    return spans if len({s[2] for s in spans}) > 1 else []


def _series(history: list[dict], keys) -> dict[str, list[Any]]:
    out = {}
    for key in keys:
        ys = [h.get(key) for h in history]
        if any(isinstance(y, (int, float)) and not math.isnan(y) for y in ys):
            out[key] = ys
    return out


def loss_keys(history: list[dict]) -> list[str]:
    """The loss keys present in the history: LOSS_KEYS' order, then any other train_l_* key."""
    seen = {k for h in history for k in h}
    extra = sorted(k for k in seen if k.startswith("train_l_") and k not in LOSS_KEYS)
    return [k for k in (*LOSS_KEYS, *extra) if k in seen]


def _training_sections(results: dict, history: list[dict]) -> list[str]:
    if not history:
        return [H.section("Training", H.paragraph("No training history (an evaluation-only run).", note=True))]
    x, spans = _epochs(history), phase_spans(history)
    out = []
    losses = _series(history, loss_keys(history))
    if losses:
        note = (f"{len(history)} epochs; one panel per loss (their scales differ), "
                f"training phases shaded ({', '.join(dict.fromkeys(s[2] for s in spans))})." if spans else
                f"{len(history)} epochs; one panel per loss (their scales differ).")
        out.append(H.section("Training curves", H.paragraph(note, note=True),
                             H.image(H.line_panels(x, losses, xlabel="epoch", spans=spans), "training losses")))
    val = _series(history, VALIDATION_KEYS)
    if val:
        best = (results.get("run") or {}).get("best_epoch")
        marks = [(float(best), f"best epoch {best}")] if isinstance(best, (int, float)) and best > 0 else []
        fig = H.line_chart(x, {VALIDATION_KEYS[k]: v for k, v in val.items()}, xlabel="epoch", ylabel="%",
                           title="Validation per epoch: utility (top-1) and privacy proxy (twin retrieval, "
                                 "lower = more private)", spans=spans, marks=marks)
        out.append(H.section("Validation", H.image(fig, "validation top-1 and privacy proxy")))
    return out


def time_rows(results: dict) -> list[list[Any]]:
    """Where the wall time went: the run's phases (share of the wall time), then each evaluation task
    (share of the evaluation). [] when results.json holds no timings."""
    run = results.get("run") or {}
    phases = run.get("phases_s") or {}
    tasks = results.get("timing_s") or {}
    rows: list[list[Any]] = []
    total = run.get("wall_time_s") or sum(phases.values())
    for name, s in phases.items():
        rows.append([name, float(s), f"{100 * s / total:.0f}% of the run" if total else ""])
    if phases and total:
        rest = total - sum(phases.values())
        if rest > 0.05 * total:
            rows.append(["other (start-up, export)", float(rest), f"{100 * rest / total:.0f}% of the run"])
    evaluation = phases.get("evaluation") or sum(tasks.values())
    for name, s in tasks.items():
        rows.append([f"evaluation: {name}", float(s),
                     f"{100 * s / evaluation:.0f}% of the evaluation" if evaluation else ""])
    return rows


def _run_items(results: dict) -> dict[str, Any]:
    run = dict(results.get("run") or {})
    run.pop("phases_s", None)
    if results.get("skipped"):
        run["skipped tasks"] = ", ".join(f"{k} ({v})" for k, v in results["skipped"].items())
    return run


def render(results: dict, history: list[dict], columns: list[TableColumn], folder: Path | None = None) -> str:
    """The report page's HTML (``folder``: the run folder, where figures written beside results.json are,
    e.g. the feature-inversion grid)."""
    run = results.get("run") or {}
    sections = []
    table = results_rows(results, columns)
    note = [H.paragraph(interval_note(results), note=True)] if table and any(c.uncertainty(results) for c in columns) else []
    sections.append(H.section("Results", H.table(table[1], header=table[0]) if table else
                              H.paragraph("The results hold no raw/anonymized pair for any table column.", note=True),
                              *note))
    figures = [(privacy_utility_figure(results, columns), "privacy vs utility per task" +
                (", pixel baselines as squares" if results.get("baselines") else "")),
               (per_attribute_figure(results), "per-attribute AP, worst attacker")]
    figures = [H.image(fig, alt) for fig, alt in figures if fig is not None]
    if figures:
        sections.append(H.section("Privacy and utility", *figures))
    grid = (results.get("reconstruction") or {}).get("grid")
    if grid and folder is not None and (Path(folder) / grid).is_file():  # eval.inversion: the attack's grid
        sections.append(H.section("Feature inversion", H.paragraph(
            "Test images (top row) and what a decoder trained on the privacy train split rebuilds from each view "
            "of their features (docs/privacy.md).", note=True), H.image(Path(folder) / grid, "feature inversion grid")))
    sections += _training_sections(results, history)
    rows = time_rows(results)
    if rows:
        total = run.get("wall_time_s")
        sections.append(H.section("Where the time went", H.table(rows, header=["part", "seconds", "share"]),
                                  *([H.paragraph(f"wall time {total:.1f} s", note=True)] if total else [])))
    items = _run_items(results)
    if items:
        sections.append(H.section("Run details", H.key_values(items)))
    name = run.get("run_name")
    return H.page(f"splavu run report: {name}" if name else "splavu run report", sections,
                  subtitle=_subtitle(run))


def _subtitle(run: dict) -> str | None:
    parts = [f"adapter {run['adapter']}" if run.get("adapter") else "",
             f"best epoch {run['best_epoch']}" if run.get("best_epoch") is not None else "",
             f"val top-1 {run['best_val_top1']:.2f}" if isinstance(run.get("best_val_top1"), (int, float)) else "",
             f"wall time {run['wall_time_s']:.0f} s" if isinstance(run.get("wall_time_s"), (int, float)) else ""]
    return " · ".join(p for p in parts if p) or None


def write_run_report(results: dict, history: list[dict], path: Path, columns: list[TableColumn]) -> Path:
    """Write report.html for a run: ``results`` is results.json's content, ``history`` the per-epoch
    metrics of the epoch loop (trainer_state.json's "history"; [] for evaluation-only runs), ``path`` the
    run folder (-> path/report.html) or an .html file, ``columns`` the table's
    (``suite.table_columns()``). Returns the file's path."""
    path = report_path(path)
    return H.write_page(path, render(results, history or [], columns, path.parent))
