"""Figures beside results.json (matplotlib, headless): privacy vs utility per task and per-attribute AP."""

from __future__ import annotations

import math
from pathlib import Path

from .report import TableColumn, present_columns

PRIVACY_UTILITY = "privacy_utility.png"
PER_ATTRIBUTE = "per_attribute_ap.png"
_RAW, _ANON = "#7f7f7f", "#1f77b4"
_BASELINE_COLOURS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on clusters or in CI
    import matplotlib.pyplot as plt

    return plt


def privacy_utility(results: dict, path: str | Path, columns: list[TableColumn]) -> Path | None:
    """One panel per utility/fairness task: x = worst-case privacy cMAP, y = the task's metric,
    an arrow from raw to anonymized, each point's 95% intervals as error bars when the results hold them,
    and one labelled square per pixel baseline when the run scored some (``results["baselines"]``:
    {name: {column header: value}}, written by ``python -m splavu_ray.evaluate baselines=[...]``).
    None when there is no privacy number or no task."""
    fig = privacy_utility_figure(results, columns)
    return None if fig is None else _save(fig, _pyplot(), path)


def privacy_utility_figure(results: dict, columns: list[TableColumn]):
    """:func:`privacy_utility`'s figure, not saved (the caller closes it); None as there."""
    cols = present_columns(results, columns)
    priv = next((c for c in cols if c.kind == "privacy"), None)
    tasks = [c for c in cols if c.kind != "privacy"]
    if priv is None or not tasks:
        return None
    plt = _pyplot()
    px = priv.values(results)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    for ax, col in zip(axes[0], tasks):
        ty = col.values(results)
        ax.annotate("", xy=(px[1], ty[1]), xytext=(px[0], ty[0]),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
        # raw: a hollow ring, so it stays visible when anonymization barely moves the point
        ax.scatter([px[0]], [ty[0]], s=160, facecolors="none", edgecolors=_RAW, linewidths=2, label="raw", zorder=3)
        ax.scatter([px[1]], [ty[1]], s=50, c=_ANON, label="anonymized", zorder=4)
        xs, ys = [px[0], px[1]], [ty[0], ty[1]]
        for i, (tag, colour) in enumerate((("raw", _RAW), ("anonymized", _ANON))):  # 95% intervals, when known
            xci, yci = _ci(priv.uncertainty(results), tag), _ci(col.uncertainty(results), tag)
            if xci or yci:
                ax.errorbar([px[i]], [ty[i]], xerr=_bar(px[i], xci), yerr=_bar(ty[i], yci), fmt="none",
                            ecolor=colour, elinewidth=1, capsize=3, zorder=2)
                xs, ys = xs + (xci or []), ys + (yci or [])
        for j, (name, vals) in enumerate((results.get("baselines") or {}).items()):  # pixel baselines
            bx, by = vals.get(priv.header), vals.get(col.header)
            if bx is None or by is None or math.isnan(bx) or math.isnan(by):
                continue
            ax.scatter([bx], [by], s=36, marker="s", c=_BASELINE_COLOURS[j % len(_BASELINE_COLOURS)], label=name,
                       zorder=3)
            ax.annotate(name, (bx, by), textcoords="offset points", xytext=(4, 4), fontsize=7)
            xs, ys = xs + [bx], ys + [by]
        chance = priv.chance(results)
        if chance is not None:
            ax.axvline(chance, ls=":", c="black", lw=1, label="privacy chance")
        ax.set_xlabel(priv.title)
        ax.set_ylabel(col.title)
        ax.set_title(col.header)
        _pad(ax, xs + ([chance] if chance is not None else []), ys)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _ci(unc: dict | None, tag: str) -> list[float] | None:
    ci = (unc or {}).get(tag)
    return [float(v) for v in ci] if ci and not any(math.isnan(v) for v in ci) else None


def _bar(value: float, ci: list[float] | None):
    return None if ci is None else [[max(0.0, value - ci[0])], [max(0.0, ci[1] - value)]]


def _pad(ax, xs, ys) -> None:
    for setter, vs in ((ax.set_xlim, xs), (ax.set_ylim, ys)):
        lo, hi = min(vs), max(vs)
        pad = max(2.0, 0.15 * (hi - lo))
        setter(lo - pad, hi + pad)


def per_attribute_ap(results: dict, path: str | Path) -> Path | None:
    """Grouped bars: worst-case AP per private attribute, raw vs anonymized, with each attribute's
    chance level (its prevalence) as a tick."""
    fig = per_attribute_figure(results)
    return None if fig is None else _save(fig, _pyplot(), path)


def per_attribute_figure(results: dict):
    """:func:`per_attribute_ap`'s figure, not saved (the caller closes it); None as there."""
    per = (results.get("privacy") or {}).get("per_attribute") or {}
    names = [n for n, v in per.items() if "raw" in v and "anonymized" in v]
    if not names:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(names) + 1.5), 3.8))
    xs = range(len(names))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], [per[n]["raw"] for n in names], w, color=_RAW, label="raw")
    ax.bar([x + w / 2 for x in xs], [per[n]["anonymized"] for n in names], w, color=_ANON, label="anonymized")
    chance = [per[n].get("chance") for n in names]
    if all(c is not None for c in chance):
        ax.scatter(list(xs), chance, marker="_", s=600, c="black", label="chance", zorder=3)
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel("AP, worst attacker (%)")
    ax.set_ylim(0, 118)  # room for the legend above the 100% line
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.set_title("Private-attribute leakage")
    ax.legend(fontsize=8, ncols=3, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _save(fig, plt, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results: dict, folder: str | Path, columns: list[TableColumn]) -> list[Path]:
    """Every figure the results allow, into ``folder``; ``columns``: the table's (one point per task)."""
    folder = Path(folder)
    made = [privacy_utility(results, folder / PRIVACY_UTILITY, columns), per_attribute_ap(results, folder / PER_ATTRIBUTE)]
    return [p for p in made if p is not None]

