"""Pixel-level baselines next to SPLAVU: one row per way of hiding people, the same columns for all.

A pixel baseline (splavu_ray.data.pixel_ops: downsampling, blur, pixelation) changes the frames before the
frozen encoder; its features live in a feature store of their own (``data.pixel.transform``), and every
evaluation task runs on them exactly as for SPLAVU, with f_A the identity (so a task's raw and anonymized
views are the same features, and the row reads the raw one). ``python -m splavu_ray.evaluate adapter=PATH
baselines=[downsample4,blur]`` runs them (splavu_ray/evaluate.py) and this module lays out the result:

- :func:`comparison_rows`: (row name, {column header: value}) for raw, each baseline, and SPLAVU;
- :func:`comparison_table`: those rows as Markdown (``baselines.md`` beside results.json);
- :func:`comparison_plot`: worst-case privacy cMAP against each utility column, one point per row
  (``baselines.png``).
"""

from __future__ import annotations

import math
from pathlib import Path

from .report import TableColumn, present_columns

TABLE = "baselines.md"
PLOT = "baselines.png"
SPLAVU = "SPLAVU (f_A)"


def comparison_rows(results: dict, baselines: dict[str, dict], columns: list[TableColumn]
                    ) -> tuple[list[TableColumn], list[tuple[str, dict[str, float]]]]:
    """Columns present in the SPLAVU results, and rows raw, each baseline (its raw view), SPLAVU (anonymized)."""
    cols = present_columns(results, columns)
    rows = [("raw", {c.header: c.values(results)[0] for c in cols})]
    for name, res in baselines.items():
        rows.append((name, {c.header: v[0] for c in cols if (v := c.values(res)) is not None}))
    rows.append((SPLAVU, {c.header: c.values(results)[1] for c in cols}))
    return cols, rows


def comparison_table(results: dict, baselines: dict[str, dict], columns: list[TableColumn]) -> str:
    cols, rows = comparison_rows(results, baselines, columns)

    def fmt(x: float | None) -> str:
        return "" if x is None else "n/a" if math.isnan(x) else f"{x:.2f}"

    lines = [["", *[c.title for c in cols]], ["---"] * (len(cols) + 1)]
    lines += [[name, *[fmt(vals.get(c.header)) for c in cols]] for name, vals in rows]
    chance = [c.chance(results) for c in cols]
    if any(x is not None for x in chance):
        lines.append(["chance", *[fmt(x) for x in chance]])
    return "\n".join("| " + " | ".join(r) + " |" for r in lines)


def comparison_plot(results: dict, baselines: dict[str, dict], columns: list[TableColumn], path: str | Path
                    ) -> Path | None:
    """One panel per utility/fairness column: x = the first privacy column (worst attacker cMAP), y = the
    column, one labelled point per row. None when there is nothing to pair."""
    cols, rows = comparison_rows(results, baselines, columns)
    priv = next((c for c in cols if c.kind == "privacy"), None)
    tasks = [c for c in cols if c.kind != "privacy"]
    if priv is None or not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 4.0), squeeze=False)
    for ax, col in zip(axes[0], tasks):
        for i, (name, vals) in enumerate(rows):
            x, y = vals.get(priv.header), vals.get(col.header)
            if x is None or y is None:
                continue
            marker = "*" if name == SPLAVU else "o" if name == "raw" else "s"
            ax.scatter([x], [y], marker=marker, s=90 if marker == "*" else 40, color=f"C{i % 10}", zorder=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(f"{priv.header} (lower = more private)", fontsize=8)
        ax.set_ylabel(col.title, fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("pixel baselines vs SPLAVU", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
