"""Ray Train + DeepSpeed: the worker loop that trains f_A and the heads, and the TorchTrainer around it.

Per worker: the frozen backbone (online mode only) stays OUTSIDE DeepSpeed; f_A + heads live in one
DeepSpeed engine (ZeRO stage 0-3). Every epoch each rank reports the same metrics; every
``checkpoint_every`` epochs all ranks save the DeepSpeed state into one Ray checkpoint, to which
rank 0 adds the consolidated adapter exports (latest and best by validation action accuracy).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from .adapter import adapter_from_config, save_adapter
from .config import Config
from .engine import (Batch, SplavuModel, head_step_loss, lr_lambda, param_groups, rank_batches,
                     scaled_lr, splavu_step_loss, validation_metrics)
from .losses import LossWeights

STATE_TAG = "state"
TRAINER_STATE = "trainer_state.json"
LATEST_ADAPTER = "adapter"
BEST_ADAPTER = "best_adapter"


def use_bf16(cfg: Config) -> bool:
    return cfg.deepspeed.bf16 == "on" or (cfg.deepspeed.bf16 == "auto" and cfg.scaling.use_gpu)


def deepspeed_config(cfg: Config, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config, generated from the project config (the one source of truth)."""
    micro = cfg.optim.batch_size // world_size
    ds: dict[str, Any] = {
        "train_batch_size": micro * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": cfg.deepspeed.zero_stage},
        "bf16": {"enabled": use_bf16(cfg)},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.optim.grad_clip > 0:
        ds["gradient_clipping"] = cfg.optim.grad_clip
    if cfg.deepspeed.zero_stage == 3:
        # Tiny adapters: gather everything at once rather than in many small buckets.
        ds["zero_optimization"].update(stage3_param_persistence_threshold=0, stage3_max_live_parameters=10**9)
    return ds


def _adapter_state(engine, stage: int) -> dict[str, torch.Tensor]:
    """Full f_A weights on every rank (gathers ZeRO-3 partitions; collective, call on all ranks)."""
    module = engine.module.adapter
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().float().clone() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu().float().clone() for k, v in module.state_dict().items()}


def _export(adapter_template, state: dict[str, torch.Tensor], folder: Path, meta: dict) -> None:
    adapter_template.load_state_dict(state)
    save_adapter(adapter_template, folder, meta)


def _all_mean(values: dict[str, float], device) -> dict[str, float]:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


class CachedSource:
    """Cached mode: features from the feature store, in a global order that is a pure function of
    (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, loop_config: dict[str, Any], cfg: Config, rank: int, world: int, device):
        from .feature_store import FeatureStore

        store = FeatureStore.open(loop_config["feature_store"])
        train, val = store.load(*loop_config["train_splits"]), store.load(*loop_config["val_splits"])
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.clips, self.static = torch.from_numpy(train.stacked_clips()), torch.from_numpy(train.stacked_static())
        self.action = torch.from_numpy(train.action_ids)
        self.val = (torch.from_numpy(val.stacked_clips()), torch.from_numpy(val.stacked_static()),
                    torch.from_numpy(val.action_ids))
        self.dim, self.num_actions, self.num_train = train.dim, len(store.meta["actions"]), len(train)
        self.meta = {"backbone": store.meta.get("backbone", {})}
        # Co-training: untrimmed videos ride along with every trimmed batch (loss.w_tad / loss.w_ad > 0).
        clip_len = int(store.meta.get("clip_len", cfg.data.clip_len))
        lc = cfg.loss
        self.tad_videos = self._untrimmed(store, lc.tad.train_split, "loss.tad.train_split", "TAD") if lc.w_tad > 0 else []
        if self.tad_videos:
            from .tad import detection_videos

            self.tad_videos = detection_videos(self.tad_videos, clip_len, store.meta["actions"])
        self.ad_videos = self._untrimmed(store, lc.ad.train_split, "loss.ad.train_split", "AD") if lc.w_ad > 0 else []
        if self.ad_videos:
            from .anomaly import anomaly_videos, balanced_batch

            self.ad_videos = anomaly_videos(self.ad_videos, clip_len)
            self.ad_labels = np.array([v.label for v in self.ad_videos])
            balanced_batch(self.ad_labels, 2, np.random.default_rng(0))  # fails now if one kind is missing
        self.tad_classes = len(store.meta["actions"]) if self.tad_videos else 0

    @staticmethod
    def _untrimmed(store, split: str, key: str, task: str):
        rows = store.load(split)
        if not len(rows):
            raise ValueError(f"{task} co-training is on but config key '{key}' names split {split!r}, which has no "
                             f"videos in the feature store {store.root}")
        return rows

    def _tad_batch(self, rng: np.random.Generator):
        from .engine import SequenceBatch
        from .tad import video_batch

        if not self.tad_videos:
            return None
        t = self.cfg.loss.tad
        idx = rng.choice(len(self.tad_videos), t.videos_per_step, replace=len(self.tad_videos) < t.videos_per_step)
        vids = [self.tad_videos[i] for i in idx]
        x, mask, seg, lab = video_batch(vids, [v.feats for v in vids], t.max_windows, rng)
        return SequenceBatch(x, mask, lab, seg)

    def _ad_batch(self, rng: np.random.Generator):
        from .anomaly import balanced_batch, sequence_batch
        from .engine import SequenceBatch

        if not self.ad_videos:
            return None
        a = self.cfg.loss.ad
        idx = balanced_batch(self.ad_labels, a.videos_per_step, rng)
        x, mask = sequence_batch([self.ad_videos[i].feats for i in idx], a.max_windows, rng)
        return SequenceBatch(x, mask, torch.from_numpy(self.ad_labels[idx]))

    def batches(self, epoch: int):
        for step, idx in enumerate(rank_batches(self.num_train, self.cfg.optim.batch_size, self.rank, self.world,
                                                self.cfg.seed, epoch)):
            # Untrimmed draws are a pure function of (seed, epoch, step, rank): resumes repeat them, and
            # every rank takes exactly one per trimmed step, so all ranks run the same number of steps.
            rng = np.random.default_rng([self.cfg.seed, epoch, step, self.rank])
            yield Batch(self.clips[idx], self.static[idx], self.action[idx], self._tad_batch(rng), self._ad_batch(rng))

    def validation(self):
        return self.val


class StreamEpochs:
    """Cuts ONE iterator over a multi-epoch stream of batches into training epochs of ``steps`` batches.

    Streaming epochs: training epoch k is the k-th run of ``steps`` batches of the stream, not exactly
    "the rows tagged k"; ``other_epoch`` counts the rows it took from other epochs. The decode actors do not
    preserve order, so a few rows of epoch k+1 can come before the last rows of k. And the two drift apart
    by the difference between the rows an epoch of the stream holds and the rows ``steps`` batches take:
    the trainer uses ``num_train // batch_size`` steps, so the remainder (``num_train % batch_size`` rows)
    makes training lag behind the stream's epochs, and rejected videos make it run ahead. Running ahead,
    the stream runs dry before the last epoch ends: that epoch ends there and later ones get no batch
    (``dry`` says where); the run takes as many steps in all as one execution per epoch would, where each
    epoch was shorter instead. With a Ray Train shard this keeps the ranks in step:
    ``streaming_split(equal=True)`` gives every rank the same number of rows over the whole stream, so with
    ``drop_last`` every rank has the same number of batches and runs dry at the same step.
    """

    def __init__(self, batches: Iterable[dict[str, Any]], steps: int):
        self._batches, self._it = batches, None
        self.steps = steps
        self.dry: tuple[int, int] | None = None  # (epoch, step) at which the stream ran out
        self.taken = self.rows = self.other_epoch = 0  # of the current epoch

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        if self._it is None:
            self._it = iter(self._batches)  # started once, consumed across every epoch
        self.taken = self.rows = self.other_epoch = 0
        for step in range(self.steps):
            batch = None if self.dry else next(self._it, None)
            if batch is None:
                self.dry = self.dry or (epoch, step)
                return
            self.taken += 1
            self.rows += len(batch["row_index"])
            if "epoch" in batch:
                self.other_epoch += int((batch["epoch"] != epoch).sum())
            yield batch


class OnlineSource:
    """Online mode: Ray Data decodes clips on CPU actors (splavu_ray.data.pipeline); the frozen backbone
    (outside DeepSpeed) embeds them in the loop, after the train augmentation on the uint8 frames.

    Rows arrive as square frames of side round(S * 256/224) (S = the backbone's input side), the eval
    resize of METHOD.md, so validation is the same centre crop the feature store uses; training takes a
    RandomResizedCrop + flip of them. Each video gives one random clip per epoch (L = 1) and two static
    frames drawn from ``data.num_static_frames`` evenly spaced ones (the reference code's 2 of 10).

    The train split is ONE Ray Data execution for the whole run (:class:`TrainStream`: every epoch still
    to run, rows tagged with their epoch), so its decode actors start once, not once per epoch
    (ray#46479). Each rank keeps one iterator over its shard and takes ``num_train // batch_size`` steps
    of ``batch_size // world`` rows from it per epoch (:class:`StreamEpochs`: streaming epochs, whose rows
    can spill into the next epoch; the ``stream_other_epoch`` metric says how many). A clip is a function
    of (seed, video, epoch) also across resumes, since the stream starts at the checkpoint's epoch; the
    order of the rows is not (cached mode is the bit-exact one). Validation is decoded once, before the
    train stream starts: the stream's actors hold their CPUs for the whole run, and validation's own
    decode actors must not wait for them."""

    def __init__(self, loop_config: dict[str, Any], cfg: Config, rank: int, world: int, device):
        import ray.train

        from .backbone import build_backbone, describe
        from .data.pipeline import iter_train_batches

        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.backbone = build_backbone(cfg.backbone, device, cfg.data.clip_len)
        self.size = self.backbone.image_size
        self.dim, self.num_actions, self.num_train = self.backbone.embed_dim, loop_config["num_actions"], loop_config["num_train"]
        self.meta = {"backbone": describe(self.backbone)}
        self.train_shard = ray.train.get_dataset_shard("train")
        self.val_shard = ray.train.get_dataset_shard("val")
        self._val = None
        self.validation()  # now, while no train decode actor holds a CPU
        self.stream = StreamEpochs(iter_train_batches(self.train_shard, cfg.optim.batch_size // world),
                                   self.num_train // cfg.optim.batch_size)

    @torch.no_grad()
    def _embed_static(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W, 3) uint8 -> (B, K, d): each frame tiled over a clip (a static clip)."""
        from .data.transforms import eval_transform

        b, k = frames.shape[:2]
        x = eval_transform(frames.reshape(b * k, 1, *frames.shape[2:]), self.size)
        x = x.expand(-1, self.cfg.data.clip_len, -1, -1, -1)
        return self.backbone(x.to(self.device)).reshape(b, k, -1).cpu()

    @torch.no_grad()
    def _embed_clips(self, clips: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, d); train augmentation when ``gen`` is given, else eval crop."""
        from .data.transforms import eval_transform, train_transform

        x = train_transform(clips, self.size, generator=gen) if gen is not None else eval_transform(clips, self.size)
        return self.backbone(x.to(self.device)).cpu()

    def batches(self, epoch: int):
        # Augmentation draws are a function of (seed, epoch, rank); the clips themselves of the pipeline's
        # (seed, video, epoch). Every rank takes the same number of steps (StreamEpochs), so collective ops
        # stay in step, also when the stream runs dry.
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.cfg.seed, epoch, self.rank]).integers(2**62)))
        for b in self.stream.epoch(epoch):
            clips = self._embed_clips(b["clips"], gen).unsqueeze(1)  # one clip per video: L = 1
            yield Batch(clips, self._embed_static(b["static"]), b["action_id"].long())
        if self.stream.dry and self.stream.dry[0] == epoch and self.rank == 0:
            say(f"[splavu] online train stream ran dry in epoch {epoch + 1}, after step {self.stream.dry[1]} of "
                f"{self.stream.steps}: the decodable videos fill fewer batches than epochs x steps (rejected "
                "videos are listed in rejects.jsonl); the remaining steps are skipped")

    def epoch_metrics(self) -> dict[str, float]:
        """Steps taken this epoch, and the fraction of its rows the stream drew for another epoch."""
        s = self.stream
        return {"stream_steps": float(s.taken), "stream_other_epoch": s.other_epoch / s.rows if s.rows else 0.0}

    def validation(self):
        # Validation clips are deterministic (eval sampling): every rank embeds all of them, once.
        if self._val is None:
            clips, static, action = [], [], []
            for b in self.val_shard.iter_torch_batches(batch_size=16, drop_last=False):
                c = b["clips"]  # (B, C, T, H, W, 3)
                clips.append(self._embed_clips(c.reshape(-1, *c.shape[2:])).reshape(c.shape[0], c.shape[1], -1))
                static.append(self._embed_static(b["static"]))
                action.append(b["action_id"].long())
            if not clips:
                raise ValueError("online mode: no validation video could be decoded (see rejects.jsonl)")
            self._val = (torch.cat(clips), torch.cat(static), torch.cat(action))
        return self._val


def say(message: str) -> None:
    """One console line from a training worker. Ray Train V2 patches print() in its workers to log AND,
    since Ray wraps the worker's stdout, to print too, so every line reached the driver twice; the
    process's own stdout is what Ray forwards (once) to the driver's console and the worker's log file."""
    print(message, file=sys.__stdout__, flush=True)


def _quiet_report_log() -> None:
    """Ray Train logs every ray.train.report() with its whole metrics dict at INFO ("Reporting training
    result ..."), which drowns the one-line epoch summary; keep its warnings and errors."""
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except Exception:  # noqa: BLE001 - a Ray without that module logs differently; nothing to quiet
        pass


def train_loop(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker loop (both data modes)."""
    import deepspeed
    import ray.train
    import ray.train.torch

    cfg = Config.model_validate(loop_config["config"])
    _quiet_report_log()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    source = (CachedSource if cfg.train.mode == "cached" else OnlineSource)(loop_config, cfg, rank, world, device)

    dim, num_actions = source.dim, source.num_actions
    if (cfg.loss.w_tad > 0 or cfg.loss.w_ad > 0) and not isinstance(source, CachedSource):
        raise ValueError("loss.w_tad / loss.w_ad co-training reads untrimmed videos from the feature store: "
                         "use train.mode=cached")
    model = SplavuModel(adapter_from_config(dim, cfg.adapter), num_actions,
                        tad_classes=getattr(source, "tad_classes", 0), anomaly=bool(getattr(source, "ad_videos", None)),
                        loss_cfg=cfg.loss)
    template = adapter_from_config(dim, cfg.adapter)  # CPU copy for exports
    total_epochs = cfg.optim.head_epochs + cfg.optim.epochs
    steps_per_epoch = source.num_train // cfg.optim.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {source.num_train} training videos")
    lr = scaled_lr(cfg.optim.lr, cfg.optim.batch_size, cfg.optim.base_batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay, lr, cfg.optim.head_lr_scale), lr=lr)
    warmup = int(cfg.optim.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_lambda(
        s, total_epochs * steps_per_epoch, warmup, cfg.optim.schedule, cfg.optim.min_lr_ratio))
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world))
    dtype = torch.bfloat16 if use_bf16(cfg) else torch.float32

    state: dict[str, Any] = {"epoch": 0, "best_val_top1": -1.0, "best_epoch": -1, "history": []}
    best_state: dict[str, torch.Tensor] | None = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as ckpt_dir:
            engine.load_checkpoint(ckpt_dir, tag=STATE_TAG)
            state = json.loads(Path(ckpt_dir, TRAINER_STATE).read_text())
            best_file = Path(ckpt_dir, BEST_ADAPTER, "adapter.safetensors")
            if best_file.is_file():
                from safetensors.torch import load_file

                best_state = load_file(str(best_file))
        if rank == 0:
            say(f"[splavu] resumed from epoch {state['epoch']} (best val top-1 {state['best_val_top1']:.2f})")

    weights = LossWeights.from_config(cfg.loss)
    meta = {**source.meta, "run_name": cfg.run_name}
    for epoch in range(state["epoch"], total_epochs):
        phase = "heads" if epoch < cfg.optim.head_epochs else "joint"
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 101 + rank)
        sums: dict[str, float] = {}
        t0, clips_seen, steps = time.perf_counter(), 0, 0
        engine.train()
        for batch in source.batches(epoch):
            batch = batch.to(device, dtype)
            steps += 1
            out = (head_step_loss(engine, batch, cfg.loss.w_ar, cfg.loss) if phase == "heads" else
                   splavu_step_loss(engine, batch, weights, cfg.loss.temperature, cfg.loss.w_ar, gen, cfg.loss))
            engine.backward(out["loss"])
            engine.step()
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            clips_seen += batch.clips.shape[0] * (batch.clips.shape[1] + (2 if phase == "joint" else 0)) + batch.num_windows
        elapsed = time.perf_counter() - t0
        metrics = {f"train_{k}": v / max(1, steps) for k, v in sums.items()}
        metrics["clips_per_s"] = clips_seen / max(elapsed, 1e-9)
        if hasattr(source, "epoch_metrics"):
            metrics.update(source.epoch_metrics())
        metrics = _all_mean(metrics, device)
        metrics["clips_per_s"] *= world  # all workers together
        va_clips, va_static, va_action = source.validation()
        metrics.update(validation_metrics(engine, va_clips.to(device, dtype), va_static.to(device, dtype),
                                          va_action.to(device), cfg.loss.temperature))
        metrics.update(epoch=epoch + 1, phase=phase, lr=float(scheduler.get_last_lr()[0]))

        adapter_state = _adapter_state(engine, cfg.deepspeed.zero_stage)
        # The best checkpoint is chosen by validation action accuracy, in the joint phase only
        # (during the heads phase f_A is still the identity). With w_ar = 0 the action head is
        # untrained, so its accuracy says nothing: the latest adapter is the best one, as with
        # train.select=last.
        by_val = cfg.loss.w_ar > 0 and cfg.train.select == "val_top1"
        if phase == "joint" and (not by_val or metrics["val_top1"] > state["best_val_top1"]):
            state.update(best_val_top1=metrics["val_top1"], best_epoch=epoch + 1)
            best_state = adapter_state
        metrics["best_val_top1"] = state["best_val_top1"]
        state["epoch"] = epoch + 1
        state["history"].append(metrics)

        last = epoch + 1 == total_epochs
        if (epoch + 1) % cfg.train.checkpoint_every == 0 or last:
            with tempfile.TemporaryDirectory() as tmp:
                engine.save_checkpoint(tmp, tag=STATE_TAG)
                if rank == 0:
                    Path(tmp, TRAINER_STATE).write_text(json.dumps(state))
                    _export(template, adapter_state, Path(tmp, LATEST_ADAPTER), {**meta, "epoch": epoch + 1})
                    if best_state is not None:
                        _export(template, best_state, Path(tmp, BEST_ADAPTER),
                                {**meta, "epoch": state["best_epoch"], "val_top1": state["best_val_top1"]})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        if rank == 0:
            _print_epoch(metrics, total_epochs)


def _print_epoch(m: dict[str, Any], total: int) -> None:
    parts = [f"epoch {m['epoch']:>3}/{total} [{m['phase']}]"]
    for key, fmt in (("train_loss", "loss {:.4f}"), ("train_l_lc", "L_LC {:.4f}"), ("train_l_t", "L_T {:.3f}"),
                     ("train_l_tad", "L_TAD {:.3f}"), ("train_l_ad", "L_AD {:.3f}"),
                     ("train_l_b", "L_B {:.3f}"), ("val_top1", "val top-1 {:.1f}"),
                     ("val_twin_retrieval", "static twin {:.1f}%"), ("clips_per_s", "{:.0f} clips/s")):
        if key in m:
            parts.append(fmt.format(m[key]))
    say("[splavu] " + " | ".join(parts))


def worker_env(cfg: Config) -> dict[str, str]:
    env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           # read by the driver and passed on to the Train controller (ray.train.v2 ENV_VARS_TO_PROPAGATE)
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(cfg.ray.report_poll_s)}
    if not cfg.scaling.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed on CPU workers (gloo process group)
    return env


def online_frame_side(cfg: Config) -> int:
    """Side of the square frames the online pipeline decodes: the eval resize round(S * 256/224) of the
    backbone's input side S, read from its config (a hub/folder backbone's weights stay unloaded)."""
    from .backbone import RANDOM_PREFIX, _model_classes, build_backbone, resolve_source

    b = cfg.backbone
    if b.source.startswith(RANDOM_PREFIX):  # tiny presets: building one costs milliseconds
        side = build_backbone(b, "cpu", cfg.data.clip_len).image_size
    else:
        path = os.path.expanduser(resolve_source(b.source))
        conf = _model_classes(b.kind)[0].from_pretrained(path, local_files_only=os.path.isdir(path))
        side = getattr(conf, "crop_size", None) or getattr(conf, "image_size", 224)
    return int(round(side * 256 / 224))


def storage_path(cfg: Config) -> str:
    """Where Ray Train keeps the run's checkpoints (``ray.storage_path``, default ``output_dir/ray``)."""
    storage = cfg.ray.storage_path or str(cfg.output_path / "ray")
    return storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))


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
        from .data.pipeline import clip_dataset

        first = min(resume_epoch(self.storage, self.run_name), self.total_epochs)
        epochs = max(1, self.total_epochs - first)
        print(f"[splavu] online train stream: epochs {first + 1}-{first + epochs} of {self.total_epochs} "
              "in one Ray Data execution", flush=True)
        return clip_dataset(self.manifest_path, self.splits, mode="train", epochs=epochs, first_epoch=first,
                            **self.kwargs)


def online_datasets(cfg: Config, manifest_path: str, train_splits: list[str], val_splits: list[str]) -> dict:
    """Ray Data clip streams for online mode (decoded on CPU actors, fixed-shape uint8 rows): "train" is
    a :class:`TrainStream` (one execution for all the epochs still to run), "val" a plain eval dataset
    (decoded once per worker). Bad videos are dropped and listed in ``output_dir/rejects.jsonl``."""
    from .data.pipeline import clip_dataset

    d = cfg.data
    common = dict(clip_len=d.clip_len, size=online_frame_side(cfg), seed=cfg.seed, stride=d.frame_stride,
                  decode_workers=d.decode_workers, batch_size=d.decode_batch_size,
                  rejects_path=str(cfg.output_path / "rejects.jsonl"))
    return {"train": TrainStream(manifest_path, train_splits, cfg.optim.head_epochs + cfg.optim.epochs,
                                 storage_path(cfg), cfg.run_name, static_k=2, static_pool=d.num_static_frames,
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


def _report_rejects(cfg: Config) -> None:
    from .data.pipeline import reject_counts

    path = cfg.output_path / "rejects.jsonl"
    counts = reject_counts(str(path))
    if counts["rejected"]:
        print(f"[splavu] online mode dropped {counts['rejected']} undecodable video(s) {counts['by_reason']}: "
              f"{path}", flush=True)


def fit(cfg: Config, feature_store: str | None, train_splits: list[str], val_splits: list[str],
        manifest_path: str | None = None):
    """Run (or resume: same run_name and storage) the TorchTrainer; returns the ray.train.Result."""
    import ray.train
    from ray.train.torch import TorchTrainer

    for k, v in worker_env(cfg).items():
        os.environ.setdefault(k, v)  # the driver's env is inherited by local workers
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    storage = storage_path(cfg)
    loop_config = {"config": cfg.to_dict(), "feature_store": feature_store,
                   "train_splits": train_splits, "val_splits": val_splits}
    datasets, dataset_config = None, None
    if cfg.train.mode == "online":
        if not manifest_path:
            raise ValueError("online mode needs the manifest path")
        from .data.manifest import read_manifest

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
                                               resources_per_worker=resources),
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


def export_from_result(result, out_dir: Path) -> dict[str, Path]:
    """Copy the consolidated adapters of the final checkpoint into ``out_dir``."""
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    paths = {}
    with result.checkpoint.as_directory() as ckpt:
        for name in (BEST_ADAPTER, LATEST_ADAPTER):
            src = Path(ckpt, name)
            if src.is_dir():
                dst = out_dir / name
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                paths[name] = dst
        state = json.loads(Path(ckpt, TRAINER_STATE).read_text())
    paths["state"] = state
    return paths
