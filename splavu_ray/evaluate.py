"""Evaluation of raw vs anonymized features (METHOD.md, evaluation protocols).

    python -m splavu_ray.evaluate adapter=PATH [--config FILE] [key=value ...]

(also run by ``python -m splavu_ray.train`` on its best adapter). Tasks, each raw vs anonymized:

- privacy: attackers trained WITH labels on static-clip features of the privacy split (the paper's
  MLP, a linear one, a bank of lr x weight-decay heads); per-attribute AP, cMAP, macro-F1 at 0.5, and
  the worst case (highest cMAP) as the headline;
- action: linear probe (L2 logistic regression by default, eval.probe), top-1 with the softmax averaged
  over each test video's evenly spaced clips;
- bias: NTU-Bias-F / -M and the natural protocol (splavu_ray.bias), per-group accuracy and the gap;
- reid: top-1 subject retrieval with no training (temporal private attribute).

Writes ``output_dir/results.json``, ``results.md`` (the Table 1 layout, splavu_ray.report) and PNGs
(splavu_ray.plots). Inputs (adapter, feature width, manifest labels) are checked before any work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import bias as bias_protocols
from . import metrics, probes
from .adapter import AnonymizingAdapter
from .config import Config, ConfigError
from .feature_store import FeatureSplit, FeatureStore
from .report import markdown_table

TASKS = ("privacy", "action", "bias", "reid", "tad", "anomaly")
OPTIONAL_TASKS = ("bias", "reid", "tad", "anomaly")  # run by default only when the data has their labels


class EvalInputError(ValueError):
    """An input of the evaluation (adapter, manifest labels, feature width) is unusable."""


@torch.no_grad()
def anonymize(adapter: AnonymizingAdapter, feats: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Apply f_A to (N, d) or (N, L, d) features."""
    adapter.eval()
    out = [adapter(torch.tensor(feats[i:i + batch], dtype=torch.float32)).numpy() for i in range(0, len(feats), batch)]
    return np.concatenate(out) if out else feats


def _fit_kw(cfg: Config) -> dict:
    device = cfg.eval.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"batch_size": cfg.eval.batch_size, "device": device}


def probe_scores(cfg: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 num_classes: int) -> np.ndarray:
    """The configured linear action probe (eval.probe) on (N, L, d) clip features: (M, num_classes)."""
    ev = cfg.eval
    return probes.action_scores(train_x, train_y, test_x, num_classes, ev.probe_epochs, ev.probe_lr, cfg.seed,
                                **_fit_kw(cfg), kind=ev.probe, c=ev.probe_c, c_grid=ev.probe_c_grid)


def _views(adapter: AnonymizingAdapter) -> tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...]:
    return ("raw", lambda x: x), ("anonymized", lambda x: anonymize(adapter, x))


# ------------------------------------------------------------------------------------------------
# Privacy: attackers on static clips
# ------------------------------------------------------------------------------------------------


def run_attackers(cfg: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  names: list[str]) -> dict[str, probes.AttackResult]:
    """{"mlp": ..., "linear": ..., "bank/lr0.001_wd0.01": ...} for the configured attackers."""
    ev = cfg.eval
    out = {}
    for kind in ("mlp", "linear"):
        if kind in ev.attackers:
            out[kind] = probes.attack(train_x, train_y, test_x, test_y, names, kind, ev.attacker_epochs,
                                      ev.attacker_lr, hidden=ev.attacker_hidden, seed=cfg.seed, **_fit_kw(cfg))
    if "bank" in ev.attackers:
        lrs, wds = probes.grid(ev.bank_lrs, ev.bank_weight_decays)
        bank = probes.attack_bank(train_x, train_y, test_x, test_y, names, lrs, wds, ev.bank_kind,
                                  ev.attacker_epochs, ev.attacker_hidden, cfg.seed, **_fit_kw(cfg))
        out.update({f"bank/{k}": v for k, v in bank.items()})
    return out


def privacy_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit) -> dict:
    names = list(train.attributes)
    ytr, yte = train.attribute_matrix(), test.attribute_matrix()
    str_, ste = train.first_static(), test.first_static()
    out: dict = {"attackers": {}}
    worst_ap: dict[str, dict[str, float]] = {}
    for tag, f in _views(adapter):
        results = run_attackers(cfg, f(str_), ytr, f(ste), yte, names)
        for name, res in results.items():
            out["attackers"].setdefault(name, {})[tag] = res.as_dict()
        mlp = results["mlp"]
        out[f"cmap_{tag}"], out[f"f1_{tag}"], out[f"per_attribute_{tag}"] = mlp.cmap, mlp.macro_f1, mlp.per_attribute
        worst = max(results, key=lambda k: results[k].cmap)
        out[f"cmap_worst_{tag}"], out[f"worst_attacker_{tag}"] = results[worst].cmap, worst
        out[f"f1_worst_{tag}"] = results[worst].macro_f1
        for attr in mlp.per_attribute:  # per attribute, the highest AP any attacker reached
            worst_ap.setdefault(attr, {})[tag] = max(r.per_attribute[attr] for r in results.values())
    chance = metrics.per_attribute_ap(np.zeros(yte.shape), yte, names)
    for attr, v in worst_ap.items():
        v["chance"] = chance[attr]
    out["per_attribute"] = worst_ap
    out["cmap_chance"] = metrics.chance_cmap(yte)
    out["cmap_worst_chance"] = out["cmap_chance"]
    out["relative_change"] = metrics.relative_change(out["cmap_raw"], out["cmap_anonymized"])
    out["worst_relative_change"] = metrics.relative_change(out["cmap_worst_raw"], out["cmap_worst_anonymized"])
    out["leakage_above_chance_drop"] = metrics.leakage_drop(out["cmap_raw"], out["cmap_anonymized"], out["cmap_chance"])
    out["sizes"] = {"train": len(train), "test": len(test)}
    return out


# ------------------------------------------------------------------------------------------------
# Action recognition
# ------------------------------------------------------------------------------------------------


def action_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit) -> dict:
    ev = cfg.eval
    atr, ate = train.stacked_clips(), test.stacked_clips()
    out: dict = {}
    for tag, f in _views(adapter):
        out[f"top1_{tag}"] = metrics.top1(probe_scores(cfg, f(atr), train.action_ids, f(ate), len(train.actions)),
                                          test.action_ids)
    out["relative_change"] = metrics.relative_change(out["top1_raw"], out["top1_anonymized"])
    out["delta_points"] = out["top1_anonymized"] - out["top1_raw"]
    out["top1_chance"] = 100.0 / max(1, len(train.actions))
    out["probe"] = ev.probe
    out["clips_per_video"] = int(ate.shape[1])
    out["sizes"] = {"train": len(train), "test": len(test)}
    return out


# ------------------------------------------------------------------------------------------------
# Gender-presentation bias
# ------------------------------------------------------------------------------------------------


def _group_report(scores: np.ndarray, labels: np.ndarray, groups: list[str]) -> dict:
    per = metrics.per_group_accuracy(scores, labels, groups)
    return {"per_group": per, "overall": metrics.top1(scores, labels), "gap": metrics.accuracy_gap(per)}


def bias_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit,
                 source: str = "") -> dict:
    ev = cfg.eval
    actions = list(train.actions)
    protocols = {
        "ntu_bias_f": bias_protocols.ntu_bias(train.rows, test.rows, actions, "F", ev.bias_flipped_action, ev.bias_p, cfg.seed),
        "ntu_bias_m": bias_protocols.ntu_bias(train.rows, test.rows, actions, "M", ev.bias_flipped_action, ev.bias_p, cfg.seed),
        "natural": bias_protocols.natural(train.rows, test.rows),
    }
    ytr, yte = train.action_ids, test.action_ids
    gte = np.array([bias_protocols.gender_group(r["gender"]) for r in test.rows])
    out: dict = {"protocols": {}, "headline": "ntu_bias_f", "source": source}
    for tag, f in _views(adapter):
        xtr, xte = f(train.stacked_clips()), f(test.stacked_clips())
        for name, sel in protocols.items():
            tr, te = sel["train"], sel["test"]
            scores = probe_scores(cfg, xtr[tr], ytr[tr], xte[te], len(actions))
            entry = out["protocols"].setdefault(name, {
                "flipped_action": sel["flipped_action"], "train_videos": int(len(tr)), "test_videos": int(len(te)),
                "train_group_share": bias_protocols.group_shares(train.rows, tr),
                "test_group_share": bias_protocols.group_shares(test.rows, te),
            })
            entry[tag] = _group_report(scores, yte[te], gte[te].tolist())
    head = out["protocols"]["ntu_bias_f"]
    for tag in ("raw", "anonymized"):
        out[f"gap_{tag}"] = head[tag]["gap"]
        out[f"overall_{tag}"] = head[tag]["overall"]
        out[f"natural_gap_{tag}"] = out["protocols"]["natural"][tag]["gap"]
    return out


# ------------------------------------------------------------------------------------------------
# Temporal private attribute: subject re-identification
# ------------------------------------------------------------------------------------------------


def gallery_probe_split(subject_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per subject, the first half (rounded up) of its videos in manifest order form the gallery and
    the rest are probes (CASIA-B style: gallery and probes are different sequences of each subject).
    Subjects with one video stay in the gallery as distractors."""
    seen: dict[str, list[int]] = {}
    for i, s in enumerate(subject_ids):
        seen.setdefault(s, []).append(i)
    gallery, probe = [], []
    for idx in seen.values():
        k = -(-len(idx) // 2)
        gallery += idx[:k]
        probe += idx[k:]
    return np.array(sorted(gallery), dtype=np.int64), np.array(sorted(probe), dtype=np.int64)


def _video_vectors(split: FeatureSplit, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    # f_A sees each video's whole clip sequence (it attends across it); the video vector is the mean.
    return np.stack([f(c[None])[0].mean(axis=0) for c in split.clips])


def reid_section(cfg: Config, adapter: AnonymizingAdapter, split: FeatureSplit, source: str = "") -> dict:
    ids = [r["subject_id"] for r in split.rows]
    gallery, probe = gallery_probe_split(ids)
    ids_a = np.array(ids)
    out: dict = {"source": source, "gallery": int(len(gallery)), "probes": int(len(probe)),
                 "subjects": len(set(ids_a[probe].tolist()))}
    for tag, f in _views(adapter):
        v = _video_vectors(split, f)
        out[f"top1_{tag}"] = metrics.retrieval_top1(v[gallery], ids_a[gallery], v[probe], ids_a[probe])
    out["top1_chance"] = metrics.retrieval_chance(ids_a[gallery], ids_a[probe])
    out["relative_change"] = metrics.relative_change(out["top1_raw"], out["top1_anonymized"])
    return out


# ------------------------------------------------------------------------------------------------
# All tasks
# ------------------------------------------------------------------------------------------------


def evaluate_features(cfg: Config, adapter: AnonymizingAdapter, privacy_train: FeatureSplit | None,
                      privacy_test: FeatureSplit | None, action_train: FeatureSplit | None,
                      action_test: FeatureSplit | None, *, bias: tuple[FeatureSplit, FeatureSplit] | None = None,
                      reid: FeatureSplit | None = None, sources: dict[str, str] | None = None) -> dict:
    """results.json content for the tasks whose data is given (None = task not run)."""
    sources = sources or {}
    splits = {"privacy": (privacy_train, privacy_test), "action": (action_train, action_test)}
    for task, (tr, te) in splits.items():
        if (tr is None) != (te is None):
            raise EvalInputError(f"{task}: give both the train and the test split, or neither")
    for split in [s for pair in splits.values() for s in pair if s is not None] + list(bias or ()) + ([reid] if reid else []):
        if split.dim and split.dim != adapter.dim:
            raise EvalInputError(f"adapter width {adapter.dim} does not match feature width {split.dim}: the adapter "
                                 "was trained on another backbone")
    out: dict = {"timing_s": {}}
    with _cpu_threads(cfg.eval.cpu_threads):
        _run_tasks(cfg, adapter, out, privacy_train, privacy_test, action_train, action_test, bias, reid, sources)
    out["sizes"] = {name: len(s) for name, s in (("privacy_train", privacy_train), ("privacy_test", privacy_test),
                                                   ("action_train", action_train), ("action_test", action_test))
                    if s is not None}
    return out


@contextmanager
def _cpu_threads(n: int | None):
    """torch's threads and the BLAS pools scikit-learn's probe runs on (threadpoolctl), both at n."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def _run_tasks(cfg, adapter, out, privacy_train, privacy_test, action_train, action_test, bias, reid, sources) -> None:
    def timed(task: str, fn, *args):
        t0 = time.time()
        out[task] = fn(*args)
        out["timing_s"][task] = round(time.time() - t0, 2)

    if privacy_train is not None:
        timed("privacy", privacy_section, cfg, adapter, privacy_train, privacy_test)
    if action_train is not None:
        timed("action", action_section, cfg, adapter, action_train, action_test)
    if bias is not None:
        timed("bias", bias_section, cfg, adapter, bias[0], bias[1], sources.get("bias", ""))
    if reid is not None:
        timed("reid", reid_section, cfg, adapter, reid, sources.get("reid", ""))


def report_table(results: dict) -> str:
    """The Markdown table (paper Table 1 layout) of whatever tasks the results hold."""
    return markdown_table(results)


# ------------------------------------------------------------------------------------------------
# Inputs, checked before any work
# ------------------------------------------------------------------------------------------------


@dataclass
class EvalPlan:
    """Which tasks run, on which manifest, and why the others do not."""

    tasks: list[str]
    manifests: dict[str, str]  # task -> manifest path (privacy, action, bias, reid)
    skipped: dict[str, str] = field(default_factory=dict)


def _split_rows(path: str, split: str):
    from .data.manifest import ManifestError, read_manifest

    try:
        man = read_manifest(path)
    except ManifestError as exc:
        raise EvalInputError(str(exc)) from None
    return man, man.split(split).rows()


def _check_privacy(cfg: Config, path: str) -> None:
    d = cfg.data
    for split in (d.privacy_train_split, d.privacy_test_split):
        man, rows = _split_rows(path, split)
        if not rows:
            raise EvalInputError(f"privacy manifest {path!r} has no rows in split {split!r} (data.privacy_*_split)")
        if not man.attributes:
            raise EvalInputError(f"privacy manifest {path!r} has no private-attribute labels (column "
                                 "'private_attributes' is empty everywhere)")
        y = man.split(split).attribute_matrix()
        pos = y.sum(axis=0)
        if not ((pos > 0) & (pos < len(y))).any():
            raise EvalInputError(f"privacy manifest {path!r}, split {split!r}: no private attribute has both present "
                                 "and absent examples, so no attacker can be trained or scored")


def _check_action(cfg: Config, path: str) -> None:
    d = cfg.data
    for split in (d.train_split, d.test_split):
        man, rows = _split_rows(path, split)
        if not rows:
            raise EvalInputError(f"manifest {path!r} has no rows in split {split!r}")
        bad = sum(1 for r in rows if r.get("action_id") is None or r["action_id"] < 0)
        if bad or not man.actions:
            raise EvalInputError(f"manifest {path!r}, split {split!r}: {bad} of {len(rows)} rows have no action label")


def _check_bias(cfg: Config, path: str) -> None:
    ev = cfg.eval
    for split in (ev.bias_train_split, ev.bias_test_split):
        man, rows = _split_rows(path, split)
        try:
            bias_protocols.check_labels(rows, f"bias manifest {path!r}, split {split!r}")
            if split == ev.bias_train_split:
                bias_protocols.resolve_flipped_action(man.actions, ev.bias_flipped_action)
        except bias_protocols.BiasProtocolError as exc:
            raise EvalInputError(str(exc)) from None


def _check_reid(cfg: Config, path: str) -> None:
    _, rows = _split_rows(path, cfg.eval.reid_split)
    where = f"re-identification manifest {path!r}, split {cfg.eval.reid_split!r}"
    missing = sum(1 for r in rows if not r.get("subject_id"))
    if not rows or missing:
        raise EvalInputError(f"{where}: {missing if rows else 'all'} of {len(rows)} rows lack a 'subject_id'")
    _, probe = gallery_probe_split([r["subject_id"] for r in rows])
    if not len(probe):
        raise EvalInputError(f"{where}: no subject has two or more videos, so there is nothing to retrieve")


def _check_tad(cfg: Config, path: str) -> None:
    t = cfg.loss.tad
    for split in (t.train_split, t.test_split):
        _, rows = _split_rows(path, split)
        if not any(r.get("segments") for r in rows):
            raise EvalInputError(f"manifest {path!r}, split {split!r} has no untrimmed videos with action segments "
                                 "(loss.tad.*_split)")


def _check_anomaly(cfg: Config, path: str) -> None:
    a = cfg.loss.ad
    _, rows = _split_rows(path, a.train_split)
    labels = {bool(r.get("anomaly")) for r in rows}
    if labels != {True, False}:
        raise EvalInputError(f"manifest {path!r}, split {a.train_split!r} needs both normal and anomalous videos "
                             "(loss.ad.train_split)")
    _, rows = _split_rows(path, a.test_split)
    if not any(r.get("anomaly_segments") for r in rows):
        raise EvalInputError(f"manifest {path!r}, split {a.test_split!r} has no anomaly segments to score "
                             "(loss.ad.test_split)")


def plan_evaluation(cfg: Config, manifests: dict[str, str]) -> EvalPlan:
    """Check every task's labels from the manifests (cheap, before feature extraction or training).

    With ``eval.tasks`` unset, bias and reid are skipped (reason recorded) when their labels are
    missing; a task that is asked for explicitly and cannot run is an error.
    """
    ev = cfg.eval
    explicit = ev.tasks is not None
    wanted = list(dict.fromkeys(ev.tasks)) if explicit else list(TASKS)
    paths = {"privacy": manifests["privacy"], "action": manifests["main"],
             "bias": ev.bias_manifest or manifests["main"], "reid": ev.reid_manifest or manifests["main"],
             "tad": manifests["main"], "anomaly": manifests["main"]}
    for key, value in (("eval.bias_manifest", ev.bias_manifest), ("eval.reid_manifest", ev.reid_manifest)):
        if value and "://" not in value and not os.path.isfile(os.path.expanduser(value)):
            raise EvalInputError(f"config key '{key}': manifest {value!r} does not exist")
    checks = {"privacy": _check_privacy, "action": _check_action, "bias": _check_bias, "reid": _check_reid,
              "tad": _check_tad, "anomaly": _check_anomaly}
    plan = EvalPlan([], {})
    for task in wanted:
        try:
            checks[task](cfg, paths[task])
        except EvalInputError as exc:
            # An explicitly configured manifest is a request too: its problems are errors.
            requested = explicit or task not in OPTIONAL_TASKS or getattr(ev, f"{task}_manifest", None)
            if requested:
                raise EvalInputError(f"eval task {task!r}: {exc}") from None
            plan.skipped[task] = str(exc)
            continue
        plan.tasks.append(task)
        plan.manifests[task] = paths[task]
    return plan


def backbone_width(cfg: Config) -> int | None:
    """The backbone's feature width from its config alone (no weights); None when only the hub knows."""
    from .backbone import BackboneError, resolve_source, tiny_videomae_config, tiny_vjepa2_config

    source = cfg.backbone.source
    if source.startswith("random:"):
        return (tiny_vjepa2_config if cfg.backbone.kind == "vjepa2" else tiny_videomae_config)().hidden_size
    try:
        config = Path(os.path.expanduser(resolve_source(source))) / "config.json"
    except BackboneError:
        return None
    try:
        return int(json.loads(config.read_text())["hidden_size"])
    except (OSError, ValueError, KeyError):
        return None


def check_adapter_width(adapter: AnonymizingAdapter, width: int | None, what: str) -> None:
    if width is not None and adapter.dim != width:
        raise EvalInputError(f"adapter width {adapter.dim} does not match the feature width {width} of {what}: "
                             "the adapter was trained on another backbone")


# ------------------------------------------------------------------------------------------------
# Stores -> results -> files
# ------------------------------------------------------------------------------------------------


def evaluate_run(cfg: Config, adapter: AnonymizingAdapter, plan: EvalPlan, stores: dict[str, FeatureStore]) -> dict:
    """Load each task's splits from its feature store (``stores``: manifest path -> store) and evaluate."""
    d, ev = cfg.data, cfg.eval

    def load(task: str, *splits: str):
        store = stores[plan.manifests[task]]
        check_adapter_width(adapter, int(store.meta["dim"]), f"feature store {store.root}")
        return tuple(store.load(s) for s in splits)

    has = plan.tasks.__contains__
    privacy = load("privacy", d.privacy_train_split, d.privacy_test_split) if has("privacy") else (None, None)
    action = load("action", d.train_split, d.test_split) if has("action") else (None, None)
    bias = load("bias", ev.bias_train_split, ev.bias_test_split) if has("bias") else None
    reid = load("reid", ev.reid_split)[0] if has("reid") else None
    results = evaluate_features(cfg, adapter, *privacy, *action, bias=bias, reid=reid,
                                sources={t: plan.manifests[t] for t in plan.tasks})
    with _cpu_threads(cfg.eval.cpu_threads):
        for task, fn in (("tad", _tad), ("anomaly", _anomaly)):
            if has(task):
                t0 = time.time()
                store = stores[plan.manifests[task]]
                check_adapter_width(adapter, int(store.meta["dim"]), f"feature store {store.root}")
                results[task] = fn(cfg, adapter, store)
                results["timing_s"][task] = round(time.time() - t0, 2)
    if plan.skipped:
        results["skipped"] = dict(plan.skipped)
    return results


def _tad(cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
    from .tad import evaluate_tad

    return evaluate_tad(cfg, adapter, store)


def _anomaly(cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
    from .anomaly import evaluate_anomaly

    return evaluate_anomaly(cfg, adapter, store)


def write_outputs(results: dict, folder: str | Path, plots: bool = True) -> dict[str, Path]:
    """results.json, results.md (the table) and, with ``plots``, the PNG figures."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "results.json", "table": folder / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["table"].write_text(report_table(results) + "\n")
    if plots:
        from .plots import write_all

        paths.update({p.stem: p for p in write_all(results, folder)})
    return paths


def ensure_stores(cfg: Config, paths: list[str]) -> dict[str, FeatureStore]:
    """The complete feature store of each manifest (extracting what is missing, Ray only then)."""
    from .features import default_store_root, ensure_features

    stores = {}
    for path in dict.fromkeys(paths):
        try:
            store = FeatureStore.open(default_store_root(cfg, path))
            if store.complete:
                stores[path] = store
                continue
        except Exception:  # noqa: BLE001 - not extracted yet
            pass
        from .train import init_ray

        init_ray(cfg)
        stores[path] = ensure_features(cfg, path)
    return stores


def parse_args(argv: list[str] | None) -> tuple[str, Config]:
    from .config import CONFIG_DIR, load_config

    parser = argparse.ArgumentParser(prog="python -m splavu_ray.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (default: the built-in demo, splavu_ray/configs/demo.yaml)")
    parser.add_argument("overrides", nargs="*", help="adapter=PATH (required) and dotted key=value overrides")
    args = parser.parse_args(argv)
    # 'adapter=PATH' names the export; 'adapter.*' keys stay config overrides of the adapter section.
    paths = [o.split("=", 1)[1] for o in args.overrides if o.startswith("adapter=")]
    overrides = [o for o in args.overrides if not o.startswith("adapter=")]
    if len(paths) != 1 or not paths[0]:
        raise ConfigError("give the adapter to evaluate exactly once: adapter=PATH (a folder with adapter.json and "
                          "adapter.safetensors, e.g. outputs/splavu-demo/best_adapter)")
    return paths[0], load_config(args.config or CONFIG_DIR / "demo.yaml", overrides)


def main(argv: list[str] | None = None) -> int:
    from .adapter import AdapterLoadError, load_adapter
    from .datasets import resolve_manifests

    t0 = time.time()
    try:
        adapter_path, cfg = parse_args(argv)
        adapter = load_adapter(adapter_path)
        check_adapter_width(adapter, backbone_width(cfg), f"backbone {cfg.backbone.source!r}")
        manifests = resolve_manifests(cfg)
        plan = plan_evaluation(cfg, manifests)
    except (ConfigError, AdapterLoadError, EvalInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for task, reason in plan.skipped.items():
        print(f"[evaluate] skipping {task}: {reason}", file=sys.stderr)
    stores = ensure_stores(cfg, list(plan.manifests.values()))
    try:
        results = evaluate_run(cfg, adapter, plan, stores)
    except EvalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    main_store = stores.get(manifests["main"])
    results["run"] = {"run_name": cfg.run_name, "adapter": str(adapter_path),
                      "feature_store": main_store.root if main_store else None,
                      "backbone": main_store.meta.get("backbone") if main_store else None,
                      "adapter_parameters": adapter.num_parameters(), "wall_time_s": round(time.time() - t0, 1)}
    paths = write_outputs(results, cfg.output_path, cfg.eval.plots)
    print("\n" + report_table(results) + "\n\n" + "\n".join(f"{k}: {p}" for k, p in paths.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
