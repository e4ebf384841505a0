"""Evaluation where the accelerators are: the planned tasks run in a Ray task, not in the calling driver.

A run's driver (``python -m splavu_ray.train``, each sweep trial, ``python -m splavu_ray.evaluate``) may sit on
a head node without GPUs (cluster/*.yaml: the head has ``CPU: 0``). :func:`evaluate_in_task` runs
:func:`splavu_ray.evaluation.suite.evaluate_run` (attackers, probes, TAD/AD detectors) as one Ray task that
asks for what one training worker gets: ``scaling.cpus_per_worker`` CPUs and, with ``scaling.use_gpu``,
``scaling.gpus_per_worker`` GPUs, so the autoscaler places it on a worker like a training worker.

What crosses to the task: the config (a dict), the adapter (its safetensors export as bytes), the plan and each
feature store by its root (a local/shared folder or an s3:// URI; the task opens it where it runs). What comes
back: the results and every file the tasks wrote into their output folder (e.g. the reconstruction grid PNG),
as bytes; the caller's run folder writes them (the driver owns the run folder, local or staged for s3://).
Where it ran (node, pid, resources) is recorded in ``results["timing"]["evaluation_task"]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import Config
from ..data.feature_store import FeatureStore
from ..evaluation.suite import EvalPlan, evaluate_run
from ..models.adapter import AnonymizingAdapter, load_adapter, save_adapter
from ..run_folder import RunFolder
from .session import connect


def task_resources(cfg: Config) -> dict[str, Any]:
    """The evaluation task's resources: one training worker's (``scaling``), on the same GPU model
    (``scaling.accelerator_type``) when it asks for GPUs."""
    s = cfg.scaling
    out: dict[str, Any] = {"num_cpus": float(s.cpus_per_worker), "num_gpus": float(s.gpus_per_worker) if s.use_gpu else 0.0}
    if s.use_gpu and s.accelerator_type:
        out["accelerator_type"] = s.accelerator_type
    return out


def pack_adapter(adapter: AnonymizingAdapter) -> dict[str, Any]:
    """The adapter as its export's files (safetensors weights + JSON config), as bytes. A stand-in that is not
    an AnonymizingAdapter itself (a subclass overriding ``forward``, as tests use) cannot be exported without
    losing its behaviour: it travels as the object, through Ray's own serialization."""
    if type(adapter) is not AnonymizingAdapter:
        import ray.cloudpickle

        module = sys.modules.get(type(adapter).__module__)
        if module is not None and module.__name__ != "__main__" and not module.__name__.startswith("splavu_ray"):
            # its class travels with it: the task's process may not import the module that defined it
            ray.cloudpickle.register_pickle_by_value(module)
        return {"module": adapter}
    with tempfile.TemporaryDirectory(prefix="splavu-adapter-") as tmp:
        save_adapter(adapter, tmp)
        return {"files": {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}}


def unpack_adapter(packed: dict[str, Any], folder: Path) -> AnonymizingAdapter:
    if "module" in packed:
        return packed["module"].eval()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in packed["files"].items():
        (folder / name).write_bytes(data)
    return load_adapter(folder)


def run_evaluation(cfg_data: dict[str, Any], packed: dict[str, Any], plan: dict[str, Any],
                   store_roots: dict[str, str], driver: dict[str, Any]) -> dict[str, Any]:
    """The body of the Ray task (also callable in-process): evaluate, return results and the files made."""
    import ray

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="splavu-eval-") as tmp:
        out = Path(tmp, "out")
        adapter = unpack_adapter(packed, Path(tmp, "adapter"))
        # the tasks' own files (e.g. the reconstruction grid) go to a scratch folder; the driver writes them
        cfg = Config.model_validate({**cfg_data, "output_dir": str(out)})
        opened: dict[str, FeatureStore] = {}
        stores = {key: opened.setdefault(root, FeatureStore.open(root)) for key, root in store_roots.items()}
        results = evaluate_run(cfg, adapter, EvalPlan(**plan), stores)
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} \
            if out.is_dir() else {}
    ctx = ray.get_runtime_context() if ray.is_initialized() else None
    where = {"ray_task": ctx is not None and ctx.get_task_id() is not None,
             "node_id": ctx.get_node_id() if ctx else None, "pid": os.getpid(),
             "driver_node_id": driver.get("node_id"), "driver_pid": driver.get("pid"),
             "resources": {k: v for k, v in (ctx.get_assigned_resources() if ctx else {}).items()},
             "in_task_s": round(time.time() - t0, 2)}
    return {"results": results, "files": files, "where": where}


def evaluate_in_task(cfg: Config, adapter: AnonymizingAdapter, plan: EvalPlan, stores: dict[str, FeatureStore],
                     folder: RunFolder) -> dict:
    """Run the planned tasks in a Ray task with a training worker's resources; write the files it made into
    ``folder``; return the results (with ``timing.evaluation_task``: where it ran). Joins or starts Ray as
    every entry point does (:func:`splavu_ray.distributed.session.connect`)."""
    import ray

    connect(cfg)
    ctx = ray.get_runtime_context()
    driver = {"node_id": ctx.get_node_id(), "pid": os.getpid()}
    remote = ray.remote(run_evaluation).options(
        # retried when Ray kills its worker (node out of memory, a lost node); its own errors are not retried
        **task_resources(cfg), max_retries=2, name="splavu-evaluation",
        # "DEFAULT": never inside the caller's placement group (a Tune trial captures its child tasks, and a
        # trial driver's bundle holds no CPU): the task is placed, and autoscaled, like a training worker.
        scheduling_strategy="DEFAULT")
    packed = pack_adapter(adapter)
    plan_data = {"tasks": list(plan.tasks), "manifests": dict(plan.manifests), "skipped": dict(plan.skipped)}
    roots = {key: store.root for key, store in stores.items()}
    try:
        out = ray.get(remote.remote(cfg.to_dict(), packed, plan_data, roots, driver))
    except ray.exceptions.RayTaskError as exc:  # the evaluation's own error (e.g. EvalInputError), not Ray's wrapper
        if isinstance(exc.cause, Exception):
            raise exc.cause from None
        raise
    if out["files"]:
        folder.make()
        for rel, data in out["files"].items():
            path = folder.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    results = out["results"]
    results.setdefault("timing", {})["evaluation_task"] = {**out["where"], "files": sorted(out["files"])}
    return results
