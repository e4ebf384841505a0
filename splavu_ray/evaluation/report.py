"""The results table, laid out like the paper's Table 1: rows raw / anonymized / relative change (and
chance), one column per task. When the results hold intervals (eval.bootstrap), each value carries its
interval, two rows give the drop raw - anonymized with its paired interval and whether that interval
excludes 0, and a line under the table says what the intervals are.

Each evaluation task declares its own columns (``EvalTask.columns``; the suite collects them in task
order), e.g. ``TableColumn("TAD mAP", "tad", "map", higher_is_better=True)`` reads
``results["tad"]["map_raw"]`` and ``results["tad"]["map_anonymized"]``. A column whose values are absent
from a results dict is left out of that table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..metrics.classification import relative_change


@dataclass(frozen=True)
class TableColumn:
    header: str
    section: str  # top-level key of results.json
    key: str  # results[section][f"{key}_raw"], [f"{key}_anonymized"], optional [f"{key}_chance"]
    higher_is_better: bool
    kind: Literal["privacy", "utility", "fairness"] = "utility"  # plots pair utility/fairness with privacy
    dataset_key: str | None = None  # results[section][dataset_key], when set, names the data in the header

    def values(self, results: dict) -> tuple[float, float] | None:
        sec = results.get(self.section)
        if not isinstance(sec, dict) or f"{self.key}_raw" not in sec or f"{self.key}_anonymized" not in sec:
            return None
        return float(sec[f"{self.key}_raw"]), float(sec[f"{self.key}_anonymized"])

    def chance(self, results: dict) -> float | None:
        value = (results.get(self.section) or {}).get(f"{self.key}_chance")
        return None if value is None else float(value)

    def chance_references(self, results: dict) -> dict[str, float]:
        """{name: value} of every chance reference (``results[section]["chance_reference"][key]``), else
        {"": ``{key}_chance``}, else {}."""
        refs = ((results.get(self.section) or {}).get("chance_reference") or {}).get(self.key)
        if refs:
            return {str(k): float(v) for k, v in refs.items()}
        value = self.chance(results)
        return {} if value is None else {"": value}

    def uncertainty(self, results: dict) -> dict | None:
        """``results[section]["intervals"][key]``: the intervals of raw, anonymized and their drop (None if absent)."""
        return ((results.get(self.section) or {}).get("intervals") or {}).get(self.key) or None

    @property
    def title(self) -> str:
        return f"{self.header} ({'higher' if self.higher_is_better else 'lower'}=better)"

    def title_for(self, results: dict) -> str:
        """:attr:`title`, naming the dataset the results say the column was scored on (``dataset_key``)."""
        name = (results.get(self.section) or {}).get(self.dataset_key) if self.dataset_key else None
        return f"{self.header}, {name} ({'higher' if self.higher_is_better else 'lower'}=better)" if name else self.title


def present_columns(results: dict, columns: list[TableColumn]) -> list[TableColumn]:
    return [c for c in columns if c.values(results) is not None]


def _fmt(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def _interval(ci, sign: str = "") -> str:
    if not ci or any(v is None or math.isnan(v) for v in ci):
        return ""
    return f" [{ci[0]:{sign}.1f}, {ci[1]:{sign}.1f}]"


def _value(x: float, unc: dict | None, tag: str) -> str:
    return _fmt(x) + _interval((unc or {}).get(tag))


def _drop(unc: dict | None) -> str:
    if not unc:
        return ""
    return f"{unc['drop']:+.2f}" + _interval(unc.get("drop_interval"), "+")


def _verdict(unc: dict | None) -> str:
    return "" if not unc else ("yes" if unc.get("drop_excludes_zero") else "no")


def _chance(refs: dict[str, float]) -> str:
    return " / ".join(f"{_fmt(v)} {name.replace('_', ' ')}".strip() for name, v in refs.items())


def interval_note(results: dict) -> str:
    """What the bracketed intervals are (from results["bootstrap"] when the results hold it)."""
    b = results.get("bootstrap") or {}
    conf = f"{100 * b['confidence']:g}%" if "confidence" in b else "Percentile"
    how = f", {b['resamples']} resamples" if b.get("resamples") else ""
    seeds = b.get("training_seeds") or []
    pooled = f", pooled over training seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    return (f"[lo, hi]: {conf} percentile bootstrap over the test videos (images for privacy on images, probe "
            f"videos for re-id){how}{pooled}. The drop is raw - anonymized, its interval paired (the same resamples score "
            "both views); \"drop beyond noise\" = that interval excludes 0.")


def markdown_table(results: dict, columns: list[TableColumn]) -> str:
    """GitHub Markdown: raw, anonymized, relative change (and chance when a column knows it)."""
    cols = present_columns(results, columns)
    if not cols:
        raise ValueError("results hold no raw/anonymized pair for any table column")
    vals = [c.values(results) for c in cols]
    chance = [c.chance_references(results) for c in cols]
    unc = [c.uncertainty(results) for c in cols]
    rows = [["", *[c.title_for(results) for c in cols]], ["---"] * (len(cols) + 1),
            ["raw", *[_value(v[0], u, "raw") for v, u in zip(vals, unc)]],
            ["anonymized", *[_value(v[1], u, "anonymized") for v, u in zip(vals, unc)]],
            ["relative change", *[f"{relative_change(*v):+.1f}%" if v[0] else "n/a" for v in vals]]]
    if any(unc):
        rows.append(["drop (raw - anonymized)", *[_drop(u) for u in unc]])
        rows.append(["drop beyond noise", *[_verdict(u) for u in unc]])
    if any(chance):
        rows.append(["chance", *[_chance(x) for x in chance]])
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    return table + "\n\n" + interval_note(results) if any(unc) else table
