"""What a sweep's study becomes on disk: trials.csv, pareto.csv, summary.json, pareto.png, pareto_adapters/.

Reads the study's trials (objective values, parameters and the record each trial stored) without
talking to Optuna itself: any object with Optuna's trial attributes will do.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..run_folder import BEST_ADAPTER, LATEST_ADAPTER, RunFolder, is_remote
from . import pareto
from .spec import PRIVACY_KEY, SweepSpec
from .sweep_report import write_sweep_report


def _filesystem(uri: str):
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri.rstrip("/"))


def load_records(folder: RunFolder, trials_uri: str | None = None) -> list[dict[str, Any]]:
    """Every trial record (each trial writes one: params, folder, raw point): the sweep folder's, or with
    ``trials_uri`` (splavu_ray.search.spec.trials_location) those under that URI, read through pyarrow.fs."""
    records = []
    if trials_uri:
        from pyarrow import fs as pafs

        fs, base = _filesystem(trials_uri)
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        paths = [f"{i.path}/record.json" for i in infos if i.type == pafs.FileType.Directory]
        paths = [p for p, i in zip(paths, fs.get_file_info(paths)) if i.type == pafs.FileType.File]

        def read_remote(path: str) -> str:
            with fs.open_input_stream(path) as f:
                return f.read().decode()

        reads = [(f"{trials_uri.split('://')[0]}://{p}", lambda p=p: read_remote(p)) for p in paths]
    else:
        reads = [(str(path), path.read_text) for path in folder.trial_records()]
    for name, read in reads:
        try:
            records.append(json.loads(read()))
        except (OSError, ValueError) as exc:
            print(f"[sweep] unreadable trial record {name}: {exc}", file=sys.stderr)
    return sorted(records, key=lambda r: r.get("finished", 0))


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def trial_rows(spec: SweepSpec, study, records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per trial of the study (every state), objectives under their metric names; each completed
    trial's record (``records``, from :func:`load_records`) is matched by its parameters."""
    rows = []
    names = spec.metric_names
    by_params: dict[str, list[dict[str, Any]]] = {}
    for rec in records or []:
        by_params.setdefault(_key(rec.get("params", {})), []).append(rec)
    for t in study.trials:
        same = by_params.get(_key(t.params)) if t.state.name == "COMPLETE" else None
        rec = same.pop(0) if same else {}
        row = {"number": t.number, "state": t.state.name,
               **{n: (t.values[i] if t.values else None) for i, n in enumerate(names)},
               "privacy_metric": rec.get("privacy_metric"),
               **{f"param:{k}": t.params.get(k) for k in spec.space},
               "duration_s": round(t.duration.total_seconds(), 1) if t.duration else None,
               "tune_trial_id": rec.get("tune_trial_id"), "trial_dir": rec.get("trial_dir")}
        row["_raw"] = rec.get("raw", {})
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = [c for c in (rows[0] if rows else {}) if not c.startswith("_")]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def raw_point(rows: list[dict[str, Any]], names: list[str]) -> list[float] | None:
    """The metrics on raw features (the same for every trial up to attacker noise: the median)."""
    point = []
    for n in names:
        vals = [r["_raw"].get(n) for r in rows if r["_raw"].get(n) is not None]
        if not vals:
            return None
        point.append(float(np.median(vals)))
    return point


def write_outputs(spec: SweepSpec, study, folder: RunFolder, trials_uri: str | None = None) -> dict[str, Any]:
    """Every file of a sweep from its study; returns summary.json's content (without the wall time).
    ``trials_uri``: the trials live there (``ray.storage_path`` a URI), not in ``folder``."""
    names, directions = spec.metric_names, spec.directions
    rows = trial_rows(spec, study, load_records(folder, trials_uri))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    values = np.array([[r[n] for n in names] for r in done], dtype=float).reshape(len(done), len(names))
    mask = pareto.pareto_mask(values, directions) if len(done) else np.zeros(0, bool)
    front_numbers = {r["number"] for r, m in zip(done, mask) if m}
    for r in rows:
        r["pareto"] = r["number"] in front_numbers
    _write_csv(folder.sweep_file("trials.csv"), rows)
    front = sorted((r for r in done if r["pareto"]), key=lambda r: r[PRIVACY_KEY])
    _write_csv(folder.sweep_file("pareto.csv"), front)

    reference, ideal = spec.reference()
    hv = pareto.hypervolume(values, directions, reference) if len(done) else 0.0
    nhv = pareto.normalized_hypervolume(values, directions, reference, ideal) if len(done) else 0.0
    raw = raw_point(done, names)
    raw_hv = pareto.normalized_hypervolume(np.array([raw]), directions, reference, ideal) if raw else None
    exported = export_frontier(front, folder)
    used: dict[str, int] = {}
    for r in done:
        used[r["privacy_metric"]] = used.get(r["privacy_metric"], 0) + 1
    plot_front(folder.sweep_file("pareto.png"), spec, values, mask, raw, spec.name)
    summary = {
        "study": spec.name, "storage": spec.storage_url, "sampler": spec.sampler.model_dump(),
        "scored_on": "val (selection split: train and val only; score a chosen trial on test with "
                     "`python -m splavu_ray.evaluate`)",
        "n_trials": len(done), "n_failed": sum(r["state"] == "FAIL" for r in rows), "n_pareto": len(front),
        "objectives": [{"name": n, "direction": d} for n, d in zip(names, directions)],
        "privacy_metric": {"requested": spec.objectives.privacy, "fallback": spec.objectives.privacy_fallback,
                           "trials_by_metric": used},
        "reference_point": dict(zip(names, reference)), "ideal_point": dict(zip(names, ideal)),
        "hypervolume": hv,
        "normalized_hypervolume": nhv,
        "normalized_hypervolume_definition": "hypervolume / volume of the box between ideal_point and "
                                             "reference_point (fraction of that box the front dominates)",
        "raw_point": dict(zip(names, raw)) if raw else None,
        "raw_point_normalized_hypervolume": raw_hv,
        "pareto_trials": [{"number": r["number"], **{n: r[n] for n in names},
                           **{k: r[f"param:{k}"] for k in spec.space}, "adapter": exported.get(r["number"])}
                          for r in front],
    }
    write_sweep_report(summary, rows, names, directions, folder.report)
    return summary


def _export_remote(trial_dir: str, dest: Path) -> bool:
    """Copy a trial's kept adapter (and results.json) from its folder under an object-store URI."""
    from pyarrow import fs as pafs

    fs, base = _filesystem(trial_dir)
    for name in (BEST_ADAPTER, LATEST_ADAPTER):
        if fs.get_file_info(f"{base}/{name}/adapter.safetensors").type == pafs.FileType.File:
            dest.mkdir(parents=True)
            pafs.copy_files(f"{base}/{name}", str(dest), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
            if fs.get_file_info(f"{base}/results.json").type == pafs.FileType.File:
                pafs.copy_files(f"{base}/results.json", str(dest / "results.json"), source_filesystem=fs,
                                destination_filesystem=pafs.LocalFileSystem())
            return True
    return False


def export_frontier(front: list[dict[str, Any]], folder: RunFolder) -> dict[int, str]:
    """Copy each frontier trial's best adapter (and results.json) to pareto_adapters/trial_NNNN, from the
    trial's folder: local, or under an object-store URI (``ray.storage_path`` s3://...)."""
    dest_root = folder.pareto_adapters
    shutil.rmtree(dest_root, ignore_errors=True)  # the front can change when a sweep continues
    paths = {}
    for r in front:
        dest = dest_root / f"trial_{r['number']:04d}"
        if is_remote(r["trial_dir"]):
            if _export_remote(r["trial_dir"], dest):
                paths[r["number"]] = str(dest)
            else:
                print(f"[sweep] frontier trial {r['number']} has no adapter under {r['trial_dir']}", file=sys.stderr)
            continue
        trial = RunFolder(Path(r["trial_dir"] or ""))
        adapter = next((trial.adapter(n) for n in (BEST_ADAPTER, LATEST_ADAPTER)
                        if (trial.adapter(n) / "adapter.safetensors").is_file()), None)
        if adapter is None:
            print(f"[sweep] frontier trial {r['number']} has no adapter under {trial.root}", file=sys.stderr)
            continue
        shutil.copytree(adapter, dest)
        if trial.results_json.is_file():
            shutil.copy2(trial.results_json, dest / "results.json")
        paths[r["number"]] = str(dest)
    return paths


def plot_front(path: Path, spec: SweepSpec, values: np.ndarray, mask: np.ndarray, raw: list[float] | None,
               title: str) -> None:
    """Privacy (x, lower is better) against each utility metric (y): all trials, the frontier
    (a step line in 2-D) and the raw-feature point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    utils = spec.objectives.utility
    fig, axes = plt.subplots(1, len(utils), figsize=(5.5 * len(utils), 4.5), squeeze=False)
    for j, metric in enumerate(utils, start=1):
        ax = axes[0][j - 1]
        if len(values):
            ax.scatter(values[~mask, 0], values[~mask, j], c="0.6", s=22, label="trials")
            f = values[mask][np.argsort(values[mask][:, 0])]
            ax.scatter(f[:, 0], f[:, j], c="tab:red", s=36, zorder=3, label="Pareto front")
            if len(utils) == 1:
                ax.step(f[:, 0], f[:, 1], where="post", c="tab:red", lw=1.2)
        if raw:
            ax.scatter([raw[0]], [raw[j]], marker="*", s=160, c="k", zorder=4, label="raw features")
        ax.set_xlabel(f"privacy: {PRIVACY_KEY} (lower = more private)")
        ax.set_ylabel(f"utility: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"sweep {title}: {len(values)} trials, {int(mask.sum())} on the front")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_summary(s: dict[str, Any], out: Path) -> str:
    lines = [f"[sweep] {s['n_trials']} trials ({s['n_failed']} failed), {s['n_pareto']} on the Pareto front; "
             f"hypervolume {s['hypervolume']:.2f} (reference {s['reference_point']}), "
             f"normalised {s['normalized_hypervolume']:.4f}; objectives scored on the selection split (val)"]
    for t in s["pareto_trials"]:
        vals = ", ".join(f"{k} {t[k]:.2f}" for k in (o["name"] for o in s["objectives"]))
        lines.append(f"  trial {t['number']}: {vals}")
    lines.append(f"outputs: {out}")
    return "\n".join(lines)
