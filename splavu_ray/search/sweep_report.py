"""A sweep's report.html: one self-contained page (the blocks are :mod:`splavu_ray.html_report`).

In order: the summary (summary.json's numbers), the Pareto front (privacy, objective 0, on x against
each utility objective on y; the front highlighted and labelled by trial number; the raw-feature point),
the front's trials, each objective over the trial number with the running best, and every trial
(trial_rows' columns, front rows highlighted).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import html_report as H
from . import pareto

REPORT = "report.html"


def report_path(path: str | Path) -> Path:
    """``path`` itself when it names an .html file, else ``path/report.html`` (the sweep folder)."""
    path = Path(path)
    return path if path.suffix == ".html" else path / REPORT


def _finite(row: dict, names: list[str]) -> bool:
    vals = [row.get(n) for n in names]
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals)


def completed(rows: list[dict], names: list[str]) -> list[dict]:
    """The trials with every objective (state COMPLETE when rows carry states), by trial number."""
    done = [r for r in rows if r.get("state", "COMPLETE") == "COMPLETE" and _finite(r, names)]
    return sorted(done, key=lambda r: r.get("number", 0))


def front_mask(done: list[dict], names: list[str], directions: list[str]) -> np.ndarray:
    """Which completed trials are on the front: the rows' "pareto" flags (frontier.write_outputs sets
    them), else computed from the objectives."""
    if not done:
        return np.zeros(0, bool)
    if all("pareto" in r for r in done):
        return np.array([bool(r["pareto"]) for r in done])
    return pareto.pareto_mask(np.array([[r[n] for n in names] for r in done], float), directions)


def running_best(values: list[float], direction: str) -> list[float]:
    """The best value so far at each position ("min" or "max")."""
    out, best = [], math.nan
    for v in values:
        if math.isfinite(v) and (math.isnan(best) or (v < best if direction == "min" else v > best)):
            best = v
        out.append(best)
    return out


def _arrow(direction: str) -> str:
    return "lower = better" if direction == "min" else "higher = better"


def front_figure(done: list[dict], mask: np.ndarray, names: list[str], directions: list[str],
                 raw: dict | None):
    """Privacy (names[0]) on x against each other objective on y: every trial, the front (red, joined in
    privacy order, trial numbers beside) and the raw-feature point."""
    plt = H.pyplot()
    utils = names[1:] or names[:1]
    fig, axes = plt.subplots(1, len(utils), figsize=(min(5.6 * len(utils), 11.5), 4.4), squeeze=False)
    values = np.array([[r[n] for n in names] for r in done], float).reshape(len(done), len(names))
    for ax, metric in zip(axes[0], utils):
        j = names.index(metric)
        if len(done):
            ax.scatter(values[~mask, 0], values[~mask, j], c="0.6", s=22, label="trials")
            order = np.argsort(values[mask][:, 0])
            f, numbers = values[mask][order], [r.get("number") for r, m in zip(done, mask) if m]
            numbers = [numbers[i] for i in order]
            ax.plot(f[:, 0], f[:, j], c="tab:red", lw=1, alpha=0.6)
            ax.scatter(f[:, 0], f[:, j], c="tab:red", s=40, zorder=3, label="Pareto front")
            for (xv, yv), n in zip(f[:, [0, j]], numbers):
                ax.annotate(str(n), (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=7, color="tab:red")
        if raw and raw.get(names[0]) is not None and raw.get(metric) is not None:
            ax.scatter([raw[names[0]]], [raw[metric]], marker="*", s=160, c="k", zorder=4, label="raw features")
        ax.set_xlabel(f"privacy: {names[0]} ({_arrow(directions[0])})")
        ax.set_ylabel(f"{metric} ({_arrow(directions[j])})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{len(done)} completed trials, {int(mask.sum())} on the front")
    fig.tight_layout()
    return fig


def history_figure(done: list[dict], names: list[str], directions: list[str]):
    """Each objective over the trial number: the trials' values (dots) and the running best (a step)."""
    plt = H.pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(min(4.2 * len(names), 11.5), 3.4), squeeze=False)
    x = [r.get("number", i) for i, r in enumerate(done)]
    for ax, name, d in zip(axes[0], names, directions):
        ys = [float(r[name]) for r in done]
        ax.scatter(x, ys, s=16, c="tab:blue", label="trial")
        ax.step(x, running_best(ys, d), where="post", c="tab:red", lw=1.4, label="best so far")
        ax.set_title(f"{name} ({_arrow(d)})", fontsize=10)
        ax.set_xlabel("trial number")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _summary_items(summary: dict) -> dict[str, Any]:
    skip = {"pareto_trials", "objectives", "normalized_hypervolume_definition", "sampler"}
    items = {k: v for k, v in summary.items() if k not in skip}
    if summary.get("objectives"):
        items["objectives"] = ", ".join(f"{o['name']} ({o['direction']})" for o in summary["objectives"])
    return items


def trial_columns(rows: list[dict]) -> list[str]:
    """The trials table's columns: every key of the rows in first-seen order, less those starting '_'."""
    return [k for k in dict.fromkeys(k for r in rows for k in r) if not k.startswith("_")]


def render(summary: dict, rows: list[dict], metric_names: list[str], directions: list[str]) -> str:
    """The sweep report page's HTML."""
    if len(metric_names) != len(directions):
        raise ValueError(f"{len(metric_names)} metric names but {len(directions)} directions")
    done = completed(rows, metric_names)
    mask = front_mask(done, metric_names, directions)
    items = _summary_items(summary)
    sections = [H.section("Summary", H.key_values(items) if items else H.paragraph("No summary yet.", note=True),
                          H.paragraph(summary["normalized_hypervolume_definition"], note=True)
                          if summary.get("normalized_hypervolume_definition") else "")]
    if done:
        sections.append(H.section("Pareto front", H.image(
            front_figure(done, mask, metric_names, directions, summary.get("raw_point")), "Pareto front")))
        front = [r for r, m in zip(done, mask) if m]
        front.sort(key=lambda r: r[metric_names[0]])
        cols = [c for c in trial_columns(front) if c not in ("state", "pareto", "tune_trial_id", "trial_dir")]
        sections.append(H.section("Trials on the front", H.table([[r.get(c) for c in cols] for r in front],
                                                                 header=cols)))
        sections.append(H.section("Objectives over the trials", H.image(
            history_figure(done, metric_names, directions), "objectives over trial number")))
    else:
        sections.append(H.section("Pareto front", H.paragraph("No completed trial yet.", note=True)))
    if rows:
        cols = trial_columns(rows)
        ordered = sorted(rows, key=lambda r: r.get("number", 0))
        front_numbers = {r.get("number") for r, m in zip(done, mask) if m}
        sections.append(H.section(f"All trials ({len(rows)})",
                                  H.table([[r.get(c) for c in cols] for r in ordered], header=cols,
                                          highlight=[r.get("number") in front_numbers for r in ordered]),
                                  H.paragraph("Highlighted: trials on the Pareto front.", note=True)))
    study = summary.get("study")
    return H.page(f"splavu sweep report: {study}" if study else "splavu sweep report", sections)


def write_sweep_report(summary: dict, rows: list[dict], metric_names: list[str], directions: list[str],
                       path: Path) -> Path:
    """Write a sweep's report.html: ``summary`` is summary.json's content (frontier.write_outputs),
    ``rows`` frontier.trial_rows' rows (keys starting '_' are not shown), ``metric_names`` /
    ``directions`` the objectives (privacy first), ``path`` the sweep folder (-> path/report.html) or an
    .html file. Returns the file's path."""
    return H.write_page(report_path(path), render(summary, rows, metric_names, directions))
