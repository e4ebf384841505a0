"""Pixel-level baselines next to SPLAVU: one row per way of hiding people, the same columns for all.

A pixel baseline (splavu_ray.data.pixel_ops: downsampling, blur, pixelation) changes the frames before the
frozen encoder; its features live in a feature store of their own (``data.pixel.transform``), and every
evaluation task runs on them exactly as for SPLAVU, with f_A the identity (so a task's raw and anonymized
views are the same features, and the row reads the raw one). ``python -m splavu_ray.evaluate adapter=PATH
baselines=[downsample4,blur]`` runs them (splavu_ray/evaluate.py) and this module lays out the result:

- :func:`comparison_rows`: (row name, {column header: value}) for raw, each baseline, and SPLAVU;
- :func:`comparison_table`: those rows as Markdown (``baselines.md`` beside results.json), each value with
  its 95% bootstrap interval when the results hold one, and the chance references in a last row;
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


def comparison_rows(results: dict, baselines: dict[str, dict], columns: list[TableColumn], splavu: bool = True
                    ) -> tuple[list[TableColumn], list[tuple[str, dict[str, float]]]]:
    """Columns present in the SPLAVU results, and rows raw, each baseline (its raw view), SPLAVU (anonymized;
    not with ``splavu=False``: a run without f_A, e.g. a pixel anonymizer's, whose results are raw only)."""
    cols = present_columns(results, columns)
    rows = [("raw", {c.header: c.values(results)[0] for c in cols})]
    for name, res in baselines.items():
        rows.append((name, {c.header: v[0] for c in cols if (v := c.values(res)) is not None}))
    if splavu:
        rows.append((SPLAVU, {c.header: c.values(results)[1] for c in cols}))
    return cols, rows


def order_columns(columns: list[TableColumn], first: tuple[str, ...] = ()) -> list[TableColumn]:
    """``columns`` with those of the results sections ``first`` moved to the front, in that order."""
    rank = {s: i for i, s in enumerate(first)}
    return sorted(columns, key=lambda c: rank.get(c.section, len(rank)))  # stable: the others keep their order


def _interval(res: dict, col: TableColumn, tag: str) -> list[float] | None:
    ci = (col.uncertainty(res) or {}).get(tag)
    return None if not ci or any(v is None or math.isnan(v) for v in ci) else [float(v) for v in ci]


def comparison_table(results: dict, baselines: dict[str, dict], columns: list[TableColumn],
                     first: tuple[str, ...] = (), splavu: bool = True) -> str:
    """Rows raw, each baseline, SPLAVU (then chance), one column per task the SPLAVU results hold (the
    sections ``first`` leading); a value's 95% interval follows it in brackets where its results hold one."""
    cols, rows = comparison_rows(results, baselines, order_columns(columns, first), splavu)
    sources = [(results, "raw"), *[(res, "raw") for res in baselines.values()], *[(results, "anonymized")] * splavu]

    def fmt(x: float | None, ci: list[float] | None = None) -> str:
        if x is None:
            return ""
        return "n/a" if math.isnan(x) else f"{x:.2f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")

    lines = [["", *[c.title for c in cols]], ["---"] * (len(cols) + 1)]
    lines += [[name, *[fmt(vals.get(c.header), _interval(res, c, tag)) for c in cols]]
              for (name, vals), (res, tag) in zip(rows, sources)]
    chance = [c.chance_references(results) for c in cols]
    if any(chance):
        lines.append(["chance", *[" / ".join(f"{fmt(v)} {k.replace('_', ' ')}".strip() for k, v in refs.items())
                                  for refs in chance]])
    return "\n".join("| " + " | ".join(r) + " |" for r in lines)


def comparison_plot(results: dict, baselines: dict[str, dict], columns: list[TableColumn], path: str | Path,
                    splavu: bool = True) -> Path | None:
    """One panel per utility/fairness column: x = the first privacy column (worst attacker cMAP), y = the
    column, one labelled point per row. None when there is nothing to pair."""
    cols, rows = comparison_rows(results, baselines, columns, splavu)
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
        if (chance := priv.chance(results)) is not None:
            ax.axvline(chance, ls=":", c="black", lw=1)
            ax.annotate("chance", (chance, ax.get_ylim()[1]), textcoords="offset points", xytext=(2, -10), fontsize=7)
        ax.set_xlabel(f"{priv.header} (lower = more private)", fontsize=8)
        ax.set_ylabel(col.title, fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("pixel baselines vs SPLAVU", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


LEARNED_ROW = "learned pixel anonymizer (f_P)"


def pixel_config(cfg, transform: str, output_dir: str, anonymizer: str | None = None,
                 tasks: list[str] | None = None):
    """``cfg`` with ``data.pixel.transform`` (and, for ``learned``, ``data.pixel.anonymizer``) set, no baselines
    of its own, writing into ``output_dir``: the config a pixel row is extracted and scored with. With the
    planned ``tasks`` given and neither TAD nor anomaly among them, its store skips the untrimmed splits."""
    from ..config import Config

    data = cfg.to_dict()
    data["data"]["pixel"].update(transform=transform, anonymizer=anonymizer)
    if tasks is not None and not {"tad", "anomaly"} & set(tasks):
        skip = data["data"]["skip_feature_splits"]
        skip += [s for s in cfg.data.untrimmed_splits if s not in skip]
    data["eval"].update(baselines=[], pixel_anonymizer=None)
    data["train"]["anonymizer"] = "adapter"  # it only scores (a pixel_unet run's own config trains f_P)
    data["output_dir"] = output_dir
    return Config.model_validate(data)


def baseline_row(res: dict, columns: list[TableColumn]) -> dict[str, float]:
    """{column header: value} of a pixel row's results (its raw view: f_A is the identity there)."""
    return {c.header: v[0] for c in columns if (v := c.values(res)) is not None}
