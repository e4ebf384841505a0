"""Ray Train around the worker loop: the TorchTrainer of a run, its online datasets, resume and export.

``fit(cfg, ...)`` runs (or resumes: same run_name and storage) the TorchTrainer whose workers run
:func:`splavu_ray.distributed.worker.train_loop`; ``export_from_result`` copies the consolidated adapters
of its final checkpoint into the run folder.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from ..config import Config
from ..data.manifest import read_manifest
from ..models.backbone import RANDOM_PREFIX, build_backbone, model_classes, resolve_source
from ..run_folder import BEST_ADAPTER, BEST_PIXEL_ANONYMIZER, LATEST_ADAPTER, LATEST_PIXEL_ANONYMIZER, RunFolder
from .clip_stream import clip_dataset, read_rejects, reject_counts
from .session import worker_env
from .worker import TRAINER_STATE, train_loop


def online_frame_side(cfg: Config) -> int:
    """Side of the square frames the online pipeline decodes: the eval resize round(S * 256/224) of the
    backbone's input side S, read from its config (a hub/folder backbone's weights stay unloaded)."""
    b = cfg.backbone
    if b.source.startswith(RANDOM_PREFIX):  # tiny presets: building one costs milliseconds
        side = build_backbone(b, "cpu", cfg.data.clip_len).image_size
    else:
        path = os.path.expanduser(resolve_source(b.source))
        conf = model_classes(b.kind)[0].from_pretrained(path, local_files_only=os.path.isdir(path))
        side = getattr(conf, "crop_size", None) or getattr(conf, "image_size", 224)
    return int(round(side * 256 / 224))


def resume_epoch(storage: str, run_name: str) -> int:
    """Epochs done by the checkpoint Ray Train resumes ``run_name`` from: the latest one registered in
    the run folder's checkpoint manager snapshot (what ``ray.train.get_checkpoint()`` returns); 0 without
    one. Reads only the checkpoint's trainer_state.json."""
    import ray.train

    try:
        checkpoint = ray.train.Result.from_path(f"{storage.rstrip('/')}/{run_name}").checkpoint
    except RuntimeError:  # no such run folder, or no snapshot in it yet: a fresh run
        return 0
    if checkpoint is None:
        return 0
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{TRAINER_STATE}") as f:
            return int(json.loads(f.read())["epoch"])
    except Exception as exc:  # noqa: BLE001 - an unreadable state: the stream starts at 0, training still runs
        print(f"[splavu] WARNING: cannot read {TRAINER_STATE} of {checkpoint.path} ({exc!r}); the online train "
              "stream starts at epoch 1", flush=True)
        return 0


def last_tracking_run(storage: str, run_name: str) -> str | None:
    """The MLflow run the checkpoint Ray Train resumes ``run_name`` from logged its epochs to (the worker keeps
    it in trainer_state.json), so that a resume after a driver restart continues that run; None without one."""
    import ray.train

    try:
        checkpoint = ray.train.Result.from_path(f"{storage.rstrip('/')}/{run_name}").checkpoint
        if checkpoint is None:
            return None
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{TRAINER_STATE}") as f:
            return json.loads(f.read()).get("tracking_run_id")
    except Exception:  # noqa: BLE001 - no run folder or snapshot yet (a fresh run), or an unreadable state
        return None


class TrainStream:
    """The online train dataset as a function, ``TorchTrainer(datasets={"train": TrainStream(...)})``.

    Ray Train (V2) calls a dataset function each time it starts the worker group (the first time and
    after every failure), in its controller, on the driver's node. This one reads the epoch the workers
    resume from (:func:`resume_epoch`) and returns ONE multi-epoch stream of the epochs still to run
    (``clip_dataset(..., epochs=total - first, first_epoch=first)``): one actor pool for the whole run,
    no epoch decoded for nothing, and each clip seeded by its own epoch also across resumes. A finished
    run gets a one-epoch stream it never reads. The dataset is built in the controller, so settings
    made on the driver's DataContext, other than Ray Train's execution options, do not reach it.
    """

    def __init__(self, manifest_path: str, splits: list[str], total_epochs: int, storage: str, run_name: str,
                 **kwargs: Any):
        if "://" not in manifest_path:  # the controller's working directory is not the driver's
            manifest_path = os.path.abspath(os.path.expanduser(manifest_path))
        self.manifest_path, self.splits, self.total_epochs = manifest_path, list(splits), int(total_epochs)
        self.storage, self.run_name, self.kwargs = storage, run_name, kwargs

    def __call__(self):
        first = min(resume_epoch(self.storage, self.run_name), self.total_epochs)
        epochs = max(1, self.total_epochs - first)
        print(f"[splavu] online train stream: epochs {first + 1}-{first + epochs} of {self.total_epochs} "
              "in one Ray Data execution", flush=True)
        return clip_dataset(self.manifest_path, self.splits, mode="train", epochs=epochs, first_epoch=first,
                            **self.kwargs)


def online_datasets(cfg: Config, manifest_path: str, train_splits: list[str], val_splits: list[str]) -> dict:
    """Ray Data clip streams for online mode (decoded on CPU actors, fixed-shape uint8 rows): "train" is
    a :class:`TrainStream` (one execution for all the epochs still to run), "val" a plain eval dataset
    (decoded once per worker). Bad videos are dropped and listed in ``output_dir/rejects.jsonl`` (decode actors
    on other nodes write to the run's URI when ``output_dir`` is one, see :func:`rejects_location`)."""
    d, folder = cfg.data, RunFolder.of(cfg)
    common = dict(clip_len=d.clip_len, size=online_frame_side(cfg), seed=cfg.seed, stride=d.frame_stride,
                  decode_workers=d.decode_workers, batch_size=d.decode_batch_size,
                  rejects_path=rejects_location(folder))
    return {"train": TrainStream(manifest_path, train_splits, cfg.optim.head_epochs + cfg.optim.epochs,
                                 folder.checkpoints, cfg.run_name, static_k=2, static_pool=d.num_static_frames,
                                 **common),
            # all static frames, as the feature store keeps them (validation_metrics picks two)
            "val": clip_dataset(manifest_path, val_splits, mode="eval", num_clips=d.num_eval_clips,
                                static_k=d.num_static_frames, **common)}


def _check_online_resources(cfg: Config) -> None:
    """Ray Data's decode actors (1 CPU each) only get the CPUs the training workers leave free: with
    none left the run would wait forever, so say so up front. (The train stream's actors keep their CPUs
    for the whole run; each worker decodes validation before the stream starts.)"""
    import ray

    if not ray.is_initialized():
        return
    total = ray.cluster_resources().get("CPU", 0.0)
    taken = cfg.scaling.num_workers * cfg.scaling.cpus_per_worker
    if total - taken < 1:
        print(f"[splavu] WARNING: train.mode=online: the cluster has {total:g} CPUs now and the "
              f"{cfg.scaling.num_workers} training workers take {taken:g} (scaling.cpus_per_worker="
              f"{cfg.scaling.cpus_per_worker:g}); Ray Data needs at least 1 more CPU to decode clips and "
              f"waits until one is free (lower scaling.cpus_per_worker or add nodes)", flush=True)


def rejects_location(folder: RunFolder) -> str:
    """Where online decode actors record bad videos: the run folder's rejects.jsonl, or for an s3:// / gs://
    output_dir (a staging folder only the driver's node sees) the same name under the URI, as per-actor parts
    that :func:`_report_rejects` merges into the staged file before the run is published."""
    return f"{folder.remote}/rejects.jsonl" if folder.remote else str(folder.rejects)


def _report_rejects(cfg: Config) -> None:
    folder = RunFolder.of(cfg)
    path = folder.rejects
    if folder.remote:
        records = read_rejects(rejects_location(folder), unique=False)
        if records:
            folder.make().rejects.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    counts = reject_counts(str(path))
    if counts["rejected"]:
        print(f"[splavu] online mode dropped {counts['rejected']} undecodable video(s) {counts['by_reason']}: "
              f"{path}", flush=True)


def fit(cfg: Config, feature_store: str | None, train_splits: list[str], val_splits: list[str],
        manifest_path: str | None = None, tracking_run_id: str | None = None):
    """Run (or resume: same run_name and storage) the TorchTrainer; returns the ray.train.Result.

    ``tracking_run_id``: the MLflow run rank 0 logs each epoch to (splavu_ray.tracking; None = none)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    for k, v in worker_env(cfg).items():
        os.environ.setdefault(k, v)  # the driver's env is inherited by local workers
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    storage = RunFolder.of(cfg).checkpoints
    loop_config = {"config": cfg.to_dict(), "feature_store": feature_store,
                   "train_splits": train_splits, "val_splits": val_splits}
    if tracking_run_id or cfg.tracking.tensorboard:  # the folder resolved here: workers run elsewhere
        loop_config.update(tracking_run_id=tracking_run_id, tensorboard_dir=str(RunFolder.of(cfg).tensorboard)
                           if cfg.tracking.tensorboard else None)
    datasets, dataset_config = None, None
    if cfg.train.mode == "online":
        if not manifest_path:
            raise ValueError("online mode needs the manifest path")
        manifest = read_manifest(manifest_path)
        loop_config.update(num_actions=len(manifest.actions), num_train=len(manifest.split(*train_splits)))
        datasets = online_datasets(cfg, manifest_path, train_splits, val_splits)
        _check_online_resources(cfg)
        # Only the training stream is split between workers; every worker validates on all of val.
        dataset_config = ray.train.DataConfig(datasets_to_split=["train"])
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                               resources_per_worker=resources,
                                               accelerator_type=cfg.scaling.accelerator_type),
        run_config=ray.train.RunConfig(
            name=cfg.run_name, storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
        ),
        datasets=datasets,
        **({"dataset_config": dataset_config} if dataset_config else {}),
    )
    result = trainer.fit()
    if cfg.train.mode == "online":
        _report_rejects(cfg)
    return result


def export_from_result(result, folder: RunFolder) -> dict[str, Any]:
    """Copy the consolidated adapters of the final checkpoint into the run folder; with the loop's state."""
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    paths: dict[str, Any] = {}
    with result.checkpoint.as_directory() as ckpt:
        for name in (BEST_ADAPTER, LATEST_ADAPTER, BEST_PIXEL_ANONYMIZER, LATEST_PIXEL_ANONYMIZER):
            src = os.path.join(ckpt, name)
            if os.path.isdir(src):
                dst = folder.adapter(name)
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                paths[name] = dst
        with open(os.path.join(ckpt, TRAINER_STATE)) as f:
            state = json.load(f)
    paths["state"] = state
    return paths
