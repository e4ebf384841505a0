"""The Ray Train worker: f_A and the heads in one DeepSpeed engine, run through the shared epoch loop.

Per worker: the frozen backbone (online mode only) stays OUTSIDE DeepSpeed; f_A + heads live in one
DeepSpeed engine (ZeRO stage 0-3). Each epoch is :func:`splavu_ray.training.loop.run_epoch`; every
``train.checkpoint_every`` epochs all ranks save the DeepSpeed state into one Ray checkpoint, to which
rank 0 adds the loop's state and the consolidated adapter exports (latest, and the one the selection
rule keeps). Metrics go to Ray Train with each checkpoint (``train.report_every``): every report is a
round trip that waits for the controller's poll.

A run with ONE worker (a sweep trial) has nothing for ZeRO to shard: with ``deepspeed.single_worker:
torch`` (the default; fp32 only) it steps with plain torch AdamW + clipping (the loop's ``TorchStepper``,
the same updates) and saves its state as safetensors + JSON, without starting a DeepSpeed engine.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..models.adapter import adapter_from_config, save_adapter
from ..models.pixel_anonymizer import PixelAnonymizer, pixel_anonymizer_from_config, save_pixel_anonymizer
from ..progress import eta
from ..run_folder import BEST_ADAPTER, BEST_PIXEL_ANONYMIZER, LATEST_ADAPTER, LATEST_PIXEL_ANONYMIZER
from ..tracking import EpochLogger
from ..training.batches import CachedSource
from ..training.loop import TorchStepper, epoch_line, new_state, run_epoch, steps_per_epoch, total_epochs
from ..training.model import build_model
from ..training.schedule import build_optimizer
from ..training.steps import Objective
from .deepspeed_config import build_no_ops, deepspeed_config, use_bf16
from .online_source import OnlineSource, say
from .pixel_source import PixelOnlineSource

STATE_TAG = "state"
TRAINER_STATE = "trainer_state.json"


class DeepSpeedStepper:
    """The epoch loop's Stepper for a DeepSpeed engine (gradient clipping is in the DeepSpeed config)."""

    def __init__(self, engine, scheduler):
        self.engine, self.scheduler = engine, scheduler

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, folder) -> None:
        self.engine.save_checkpoint(folder, tag=STATE_TAG)

    def load(self, folder) -> None:
        self.engine.load_checkpoint(folder, tag=STATE_TAG)


def uses_deepspeed(cfg: Config, world: int) -> bool:
    """Whether the workers step through a DeepSpeed engine: always with several workers or bf16; with one
    fp32 worker only when ``deepspeed.single_worker`` says so (else plain torch, the same updates)."""
    return world > 1 or use_bf16(cfg) or cfg.deepspeed.single_worker == "deepspeed"


def _adapter_state(model, stage: int) -> dict[str, torch.Tensor]:
    """Full f_A weights on every rank (gathers ZeRO-3 partitions; collective, call on all ranks). ``model``: the
    SplavuModel (a DeepSpeed engine wraps that same module)."""
    module = model.adapter
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().float().clone() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu().float().clone() for k, v in module.state_dict().items()}


def _export(adapter_template, state: dict[str, torch.Tensor], folder: Path, meta: dict) -> None:
    adapter_template.load_state_dict(state)
    if isinstance(adapter_template, PixelAnonymizer):  # f_P (train.anonymizer=pixel_unet)
        save_pixel_anonymizer(adapter_template, folder, meta)
    else:
        save_adapter(adapter_template, folder, meta)


def _exports(cfg: Config) -> tuple[str, str, str]:
    """(latest, best, weights file) of what this run trains: f_A, or f_P (train.anonymizer=pixel_unet)."""
    if cfg.train.anonymizer == "pixel_unet":
        return LATEST_PIXEL_ANONYMIZER, BEST_PIXEL_ANONYMIZER, "pixel_anonymizer.safetensors"
    return LATEST_ADAPTER, BEST_ADAPTER, "adapter.safetensors"


def _quiet_report_log() -> None:
    """Ray Train logs every ray.train.report() with its whole metrics dict at INFO ("Reporting training
    result ..."), which drowns the one-line epoch summary; keep its warnings and errors.

    The logger is named after the module that reports (Ray Train V2's worker context module); there is no
    public handle on it, so it is looked up by that module's file name, and nothing happens when a Ray
    release moves it (the dump then just stays)."""
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except Exception:  # noqa: BLE001 - a Ray without that module logs differently; nothing to quiet
        pass


def _source(loop_config: dict[str, Any], cfg: Config, rank: int, world: int, device):
    if cfg.train.mode == "cached":
        return CachedSource(loop_config["feature_store"], loop_config["train_splits"], loop_config["val_splits"],
                            cfg, rank, world)
    if cfg.loss.w_tad > 0 or cfg.loss.w_ad > 0:
        raise ValueError("loss.w_tad / loss.w_ad co-training reads untrimmed videos from the feature store: "
                         "use train.mode=cached")
    online = PixelOnlineSource if cfg.train.anonymizer == "pixel_unet" else OnlineSource
    return online(loop_config["num_actions"], loop_config["num_train"], cfg, rank, world, device)


def _reports_at(epoch: int, epochs: int, cfg: Config) -> tuple[bool, bool]:
    """(checkpoint, report) after 0-based ``epoch``: a checkpoint every ``train.checkpoint_every`` epochs and at
    the end; a report with each checkpoint and every ``train.report_every`` epochs when that is set."""
    done = epoch + 1
    checkpoint = done % cfg.train.checkpoint_every == 0 or done == epochs
    every = cfg.train.report_every
    return checkpoint, checkpoint or (every is not None and done % every == 0)


def train_loop(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker loop (both data modes)."""
    import ray.train
    import ray.train.torch

    t_entry = time.monotonic()
    cfg = Config.model_validate(loop_config["config"])
    _quiet_report_log()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    source = _source(loop_config, cfg, rank, world, device)
    model = build_model(cfg, source)
    template = (pixel_anonymizer_from_config(cfg.pixel_unet) if cfg.train.anonymizer == "pixel_unet"
                else adapter_from_config(source.dim, cfg.adapter))  # CPU copy for exports
    latest_name, best_name, weights_name = _exports(cfg)
    epochs = total_epochs(cfg)
    optimizer, scheduler = build_optimizer(model, cfg.optim, steps_per_epoch(source.num_train, cfg))
    if uses_deepspeed(cfg, world):
        import deepspeed

        build_no_ops()  # no compiler run: DeepSpeed's C++ ops are not needed here
        engine, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world))
        stepper = DeepSpeedStepper(engine, scheduler)
    else:  # (DeepSpeed moves its module to the device itself; Module.to keeps the optimizer's parameters)
        engine, stepper = model.to(device), TorchStepper(model, optimizer, scheduler, cfg.optim.grad_clip)
    dtype = torch.bfloat16 if use_bf16(cfg) else torch.float32

    state, best_state = new_state(), None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as ckpt_dir:
            stepper.load(ckpt_dir)
            state = json.loads(Path(ckpt_dir, TRAINER_STATE).read_text())
            best_file = Path(ckpt_dir, best_name, weights_name)
            if best_file.is_file():
                from safetensors.torch import load_file

                best_state = load_file(str(best_file))
        if rank == 0:
            say(f"[splavu] resumed from epoch {state['epoch']} (best val top-1 {state['best_val_top1']:.2f})")

    # MLflow: the driver opened the run (tracking.mlflow_uri) and passes its id; rank 0 logs each epoch to it
    # with MLflow's client. Not Ray's setup_mlflow: it always creates a NEW run (no run id to attach to), so
    # the epochs would land apart from the driver's results and artifacts, and each worker restart would
    # open yet another run. The checkpoint keeps the id: a resume after a driver restart continues that run
    # (the driver reads it back, torch_trainer.last_tracking_run).
    tracking_run_id = loop_config.get("tracking_run_id")
    if tracking_run_id:
        state["tracking_run_id"] = tracking_run_id
    epoch_log = EpochLogger(cfg.tracking.mlflow_uri, tracking_run_id, loop_config.get("tensorboard_dir")) \
        if rank == 0 and (tracking_run_id or loop_config.get("tensorboard_dir")) else None
    obj = Objective.from_config(cfg)
    meta = {**source.meta, "run_name": cfg.run_name}
    first, t_loop = state["epoch"], time.monotonic()
    # Where this worker's time goes (this attempt; results.json "timing" adds the driver's side).
    timing = {"stepper": "deepspeed" if isinstance(stepper, DeepSpeedStepper) else "torch",
              "setup_s": round(t_loop - t_entry, 3), "epochs_s": 0.0, "checkpoints_reports_s": 0.0}
    for epoch in range(state["epoch"], epochs):
        t_epoch = time.monotonic()
        metrics, improved = run_epoch(engine, stepper, source, epoch, cfg, obj, state, rank, world, device, dtype)
        if epoch_log is not None:
            epoch_log.log(metrics, epoch + 1)
        adapter_state = _adapter_state(model, cfg.deepspeed.zero_stage)  # collective: every rank, every epoch
        if improved:
            best_state = adapter_state
        t_report = time.monotonic()
        timing["epochs_s"] += t_report - t_epoch
        state["timing"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in timing.items()}
        save, report = _reports_at(epoch, epochs, cfg)
        if save:
            with tempfile.TemporaryDirectory() as tmp:
                stepper.save(tmp)
                if rank == 0:
                    Path(tmp, TRAINER_STATE).write_text(json.dumps(state))
                    _export(template, adapter_state, Path(tmp, latest_name), {**meta, "epoch": epoch + 1})
                    if best_state is not None:
                        _export(template, best_state, Path(tmp, best_name),
                                {**meta, "epoch": state["best_epoch"], "val_top1": state["best_val_top1"]})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        elif report:
            ray.train.report(metrics)
        timing["checkpoints_reports_s"] += time.monotonic() - t_report
        if rank == 0:
            say(epoch_line(metrics, epochs, eta(epoch + 1 - first, epochs - first, time.monotonic() - t_loop)))
    if epoch_log is not None:
        epoch_log.close()
