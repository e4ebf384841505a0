"""The evaluation suite: which tasks run on which data, running them, and the files they produce.

Tasks (each raw vs anonymized, each its own module with the :class:`~splavu_ray.evaluation.task.EvalTask`
interface; docs/method.md, "Evaluation protocols"):

- privacy: attackers trained WITH labels on the privacy split (static clips of images, mean clip features
  of videos); worst-case cMAP;
- action: linear probe, top-1 with the softmax averaged over each test video's clips;
- bias: NTU-Bias-F / -M and the natural protocol, per-group accuracy and the gap;
- reid: top-1 subject retrieval with no training (temporal private attribute);
- tad: a TriDet-style detector, THUMOS mAP over tIoU 0.3:0.7;
- anomaly: an MGFN-style weakly supervised head, frame-level ROC AUC.

:func:`plan_evaluation` checks every task's labels from the manifests before any feature extraction
or training; :func:`evaluate_run` runs the planned tasks on their feature stores; :func:`write_outputs`
writes results.json, results.md (the table) and the plots into the run folder.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..models.adapter import AnonymizingAdapter
from ..models.backbone import BackboneError, resolve_source, tiny_config
from ..progress import Progress
from ..run_folder import RunFolder
from .action import ActionTask, action_section
from .anomaly import AnomalyTask
from .bias import BiasTask, bias_section
from .gait import GaitTask
from .inversion import InversionTask
from .plots import write_all
from .privacy import PrivacyTask, attribute_table, privacy_section
from .reid import ReidTask, reid_section
from .report import TableColumn, markdown_table
from .run_report import write_run_report
from .selection import selection_view
from .tad import TADTask
from .task import EvalInputError, EvalTask, check_split_width, check_width, cpu_threads
from .toyota_bias import ToyotaBiasTask
from .uncertainty import settings as bootstrap_settings

# The registry, in table order. A new task is a module with an EvalTask subclass, added here
# (or at run time with register_task) and to the eval.tasks choices of the config.
TASKS: dict[str, EvalTask] = {t.name: t for t in (PrivacyTask(), ActionTask(), BiasTask(), ToyotaBiasTask(),
                                                   ReidTask(), GaitTask(), TADTask(),
                                                   AnomalyTask(), InversionTask())}


def register_task(task: EvalTask) -> None:
    """Add (or replace, by name) an evaluation task."""
    TASKS[task.name] = task


def table_columns() -> list[TableColumn]:
    """Every registered task's table columns, in registry order."""
    return [c for t in TASKS.values() for c in t.columns]


def report_table(results: dict) -> str:
    """The Markdown table (paper Table 1 layout) of whatever tasks the results hold."""
    table = markdown_table(results, table_columns())
    if per_attribute := attribute_table(results):  # a named privacy benchmark: its attributes, as the paper
        table += "\n\n" + per_attribute
    if results.get("scored_on") == "val":
        table = "Scored on the selection split (val and held-out training rows), not on test.\n\n" + table
    return table


# ------------------------------------------------------------------------------------------------
# Planning: labels checked before any work
# ------------------------------------------------------------------------------------------------


@dataclass
class EvalPlan:
    """Which tasks run, on which manifest (or feature store), and why the others do not."""

    tasks: list[str]
    manifests: dict[str, str]  # task -> manifest path (the key of its feature store in ``stores``)
    skipped: dict[str, str] = field(default_factory=dict)


def plan_evaluation(cfg: Config, manifests: dict[str, str]) -> EvalPlan:
    """Check every task's labels from the manifests (cheap, before feature extraction or training).

    With ``eval.tasks`` unset, optional tasks (bias, reid, tad, anomaly) are skipped (reason recorded)
    when their labels are missing; a task that is asked for explicitly (in ``eval.tasks``, or by a
    manifest of its own) and cannot run is an error.
    """
    explicit = cfg.eval.tasks is not None
    wanted = list(dict.fromkeys(cfg.eval.tasks)) if explicit else [n for n, t in TASKS.items() if t.default_on(cfg)]
    for task in TASKS.values():
        own = task.own_manifest(cfg)
        if own and "://" not in own and not os.path.isfile(os.path.expanduser(own)):
            raise EvalInputError(f"config key 'eval.{task.name}.manifest': manifest {own!r} does not exist")
    plan = EvalPlan([], {})
    for name in wanted:
        task = TASKS[name]
        path = task.manifest(cfg, manifests)
        try:
            task.check(cfg, path)
        except EvalInputError as exc:
            if explicit or not task.optional or task.own_manifest(cfg):
                raise EvalInputError(f"eval task {name!r}: {exc}") from None
            plan.skipped[name] = str(exc)
            continue
        plan.tasks.append(name)
        plan.manifests[name] = path
    return plan


def backbone_width(cfg: Config) -> int | None:
    """The backbone's feature width from its config alone (no weights); None when only the hub knows."""
    source = cfg.backbone.source
    if source.startswith("random:"):
        return tiny_config(cfg.backbone.kind).hidden_size
    try:
        config = Path(os.path.expanduser(resolve_source(source, fetch=False))) / "config.json"
    except BackboneError:
        return None
    try:
        return int(json.loads(config.read_text())["hidden_size"])
    except (OSError, ValueError, KeyError):
        return None


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------


def _timed(out: dict, name: str, fn, *args) -> None:
    t0 = time.time()
    out[name] = fn(*args)
    out["timing_s"][name] = round(time.time() - t0, 2)


def evaluate_run(cfg: Config, adapter: AnonymizingAdapter, plan: EvalPlan, stores: dict[str, FeatureStore]) -> dict:
    """Run the planned tasks, each on its feature store (``stores``: the plan's manifest path -> store)."""
    out: dict = {"timing_s": {}, "scored_on": cfg.eval.score_on}
    if cfg.eval.bootstrap.resamples:  # how the intervals beside every headline number were drawn
        out["bootstrap"] = bootstrap_settings(cfg)
    tasks, skipped = plan.tasks, dict(plan.skipped)
    if cfg.eval.score_on == "val":  # a selection split, never test (splavu_ray.evaluation.selection)
        cfg, tasks, stores, left_out = selection_view(cfg, plan.tasks, plan.manifests, stores)
        skipped.update(left_out)
    with cpu_threads(cfg.eval.cpu_threads), Progress(len(tasks), "evaluation", unit="task") as bar:
        for name in tasks:
            store = stores[plan.manifests[name]]
            check_width(adapter, int(store.meta["dim"]), f"feature store {store.root}")
            _timed(out, name, TASKS[name].run, cfg, adapter, store)
            bar.update(1, done=name)
    out["sizes"] = {f"{task}_{part}": out[task]["sizes"][part] for task in ("privacy", "action") if task in out
                    for part in ("train", "test")}
    if skipped:
        out["skipped"] = skipped
    return out


def evaluate_features(cfg: Config, adapter: AnonymizingAdapter, privacy_train: FeatureSplit | None,
                      privacy_test: FeatureSplit | None, action_train: FeatureSplit | None,
                      action_test: FeatureSplit | None, *, bias: tuple[FeatureSplit, FeatureSplit] | None = None,
                      reid: FeatureSplit | None = None, sources: dict[str, str] | None = None) -> dict:
    """The trimmed-video tasks on splits already in memory (None = task not run): what a replay or a test
    scores without a feature store on disk. The same task code as :func:`evaluate_run`."""
    sources = sources or {}
    for task, (tr, te) in {"privacy": (privacy_train, privacy_test), "action": (action_train, action_test)}.items():
        if (tr is None) != (te is None):
            raise EvalInputError(f"{task}: give both the train and the test split, or neither")
    check_split_width(adapter, privacy_train, privacy_test, action_train, action_test, *(bias or ()), reid)
    out: dict = {"timing_s": {}}
    if cfg.eval.bootstrap.resamples:
        out["bootstrap"] = bootstrap_settings(cfg)
    with cpu_threads(cfg.eval.cpu_threads):
        if privacy_train is not None:
            _timed(out, "privacy", privacy_section, cfg, adapter, privacy_train, privacy_test)
        if action_train is not None:
            _timed(out, "action", action_section, cfg, adapter, action_train, action_test)
        if bias is not None:
            _timed(out, "bias", bias_section, cfg, adapter, bias[0], bias[1], sources.get("bias", ""))
        if reid is not None:
            _timed(out, "reid", reid_section, cfg, adapter, reid, sources.get("reid", ""))
    out["sizes"] = {name: len(s) for name, s in (("privacy_train", privacy_train), ("privacy_test", privacy_test),
                                                   ("action_train", action_train), ("action_test", action_test))
                    if s is not None}
    return out


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def write_outputs(results: dict, folder: RunFolder, plots: bool = True, history: list[dict] | None = None) -> dict[str, Path]:
    """results.json, results.md (the table) and, with ``plots``, the PNG figures and report.html (with the
    training curves of ``history``, the loop's per-epoch metrics, when the run trained)."""
    folder.make()
    paths = {"json": folder.results_json, "table": folder.results_table}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["table"].write_text(report_table(results) + "\n")
    if plots:
        paths.update({p.stem: p for p in write_all(results, folder.root, table_columns())})
        paths["report"] = write_run_report(results, history or [], folder.report, table_columns())
    return paths
