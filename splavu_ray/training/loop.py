"""The epoch loop: the one loop every SPLAVU training runs, in a Ray Train worker or in one process.

An epoch is: train on every batch of the source (heads first on raw features for ``optim.head_epochs``
epochs, then the joint objective), average the metrics over ranks, score the validation split, and let
the selection rule say whether this epoch's adapter is the one to keep. What differs between a DeepSpeed
worker and a plain replay is only how a loss becomes an update (a :class:`Stepper`) and where the batches
come from (a source with ``batches(epoch)`` and ``validation()``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Protocol

import torch

from ..config import Config
from .model import Batch
from .steps import Objective, head_step_loss, splavu_step_loss, validation_metrics


class Stepper(Protocol):
    """Turns a step's loss into a parameter update."""

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> None: ...

    def lr(self) -> float: ...


class TorchStepper:
    """Plain PyTorch: what DeepSpeed's engine does with ``gradient_clipping`` and a scheduler, for one process
    (the replay, and a Ray Train run with one worker: ``deepspeed.single_worker``), with a pickle-free state."""

    def __init__(self, model: torch.nn.Module, optimizer, scheduler, grad_clip: float):
        self.model, self.optimizer, self.scheduler, self.grad_clip = model, optimizer, scheduler, grad_clip

    def backward(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()

    def step(self) -> None:
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, folder: str | Path) -> None:
        """Model, optimizer and schedule into ``folder``: tensors as safetensors, the rest as JSON (no pickle)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        opt = self.optimizer.state_dict()
        tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        scalars: dict[str, dict[str, Any]] = {}
        for idx, slots in opt["state"].items():
            for name, value in slots.items():
                if torch.is_tensor(value):
                    tensors[f"optimizer/{idx}/{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[name] = value
        save_file(tensors, str(folder / TORCH_STATE_TENSORS))
        (folder / TORCH_STATE_JSON).write_text(json.dumps(
            {"param_groups": opt["param_groups"], "optimizer_scalars": scalars,
             "scheduler": {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}}))

    def load(self, folder: str | Path) -> None:
        """The state :meth:`save` wrote (a checkpoint from a DeepSpeed engine has none: say so)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / TORCH_STATE_TENSORS).is_file():
            raise FileNotFoundError(f"{folder} holds no {TORCH_STATE_TENSORS}: the checkpoint was not written by the "
                                    "plain-torch stepper (a DeepSpeed engine's checkpoint resumes only with "
                                    "deepspeed.single_worker=deepspeed)")
        tensors = load_file(str(folder / TORCH_STATE_TENSORS))
        meta = json.loads((folder / TORCH_STATE_JSON).read_text())
        self.model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
        state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["optimizer_scalars"].items()}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, idx, name = key.split("/", 2)
                state.setdefault(int(idx), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.scheduler.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(self.optimizer.param_groups)})


TORCH_STATE_TENSORS = "torch_state.safetensors"
TORCH_STATE_JSON = "torch_state.json"


class Source(Protocol):
    num_train: int

    def batches(self, epoch: int) -> Iterable[Batch]: ...

    def validation(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def total_epochs(cfg: Config) -> int:
    return cfg.optim.head_epochs + cfg.optim.epochs


def phase(epoch: int, cfg: Config) -> str:
    """'heads' (heads on raw features, f_A untouched) for the first ``optim.head_epochs`` epochs, then 'joint'."""
    return "heads" if epoch < cfg.optim.head_epochs else "joint"


def steps_per_epoch(num_train: int, cfg: Config) -> int:
    steps = num_train // cfg.optim.batch_size
    if steps == 0:
        raise ValueError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {num_train} training videos")
    return steps


def step_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The static-pair draws of one epoch on one rank: a pure function of (seed, epoch, rank)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + rank)


def new_state() -> dict[str, Any]:
    """The loop's resumable state (saved as trainer_state.json in every checkpoint)."""
    return {"epoch": 0, "best_val_top1": -1.0, "best_epoch": -1, "history": []}


def all_mean(values: dict[str, float], device) -> dict[str, float]:
    """The mean of each value over ranks (the values themselves without torch.distributed)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def train_epoch(model, stepper: Stepper, batches: Iterable[Batch], epoch_phase: str, obj: Objective,
                gen: torch.Generator, device, dtype) -> dict[str, float]:
    """One pass over ``batches``: the mean of every loss term and the clips/s of this rank."""
    sums: dict[str, float] = {}
    t0, clips_seen, steps = time.perf_counter(), 0, 0
    model.train()
    for batch in batches:
        batch = batch.to(device, dtype)
        steps += 1
        out = (head_step_loss(model, batch, obj) if epoch_phase == "heads" else
               splavu_step_loss(model, batch, obj, gen))
        stepper.backward(out["loss"])
        stepper.step()
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        static = 2 if epoch_phase == "joint" else 0
        clips_seen += batch.clips.shape[0] * (batch.clips.shape[1] + static) + batch.num_windows
    metrics = {f"train_{k}": v / max(1, steps) for k, v in sums.items()}
    metrics["clips_per_s"] = clips_seen / max(time.perf_counter() - t0, 1e-9)
    return metrics


def keeps(metrics: dict[str, Any], state: dict[str, Any], cfg: Config) -> bool:
    """Whether this epoch's adapter becomes the run's best (``train.select``), updating ``state``.

    Only joint epochs count (during the heads phase f_A is still the identity). ``val_top1`` keeps the
    best validation action accuracy; with w_ar = 0 the action head is untrained and its accuracy says
    nothing, so then, as with ``last``, the latest adapter is the best one.
    """
    by_val = cfg.loss.w_ar > 0 and cfg.train.select == "val_top1"
    if metrics["phase"] != "joint" or (by_val and metrics["val_top1"] <= state["best_val_top1"]):
        return False
    state.update(best_val_top1=metrics["val_top1"], best_epoch=metrics["epoch"])
    return True


def run_epoch(model, stepper: Stepper, source: Source, epoch: int, cfg: Config, obj: Objective, state: dict[str, Any],
              rank: int = 0, world: int = 1, device="cpu", dtype=torch.float32) -> tuple[dict[str, Any], bool]:
    """Train one epoch, validate, select: (this epoch's metrics, whether its adapter is now the best).

    ``state`` (see :func:`new_state`) advances by one epoch and records the metrics in its history.
    Collective when ``world`` > 1: every rank calls it for every epoch.
    """
    epoch_phase = phase(epoch, cfg)
    metrics = train_epoch(model, stepper, source.batches(epoch), epoch_phase, obj,
                          step_generator(cfg.seed, epoch, rank), device, dtype)
    if hasattr(source, "epoch_metrics"):
        metrics.update(source.epoch_metrics())
    metrics = all_mean(metrics, device)
    metrics["clips_per_s"] *= world  # all workers together
    va_clips, va_static, va_action = source.validation()
    metrics.update(validation_metrics(model, va_clips.to(device, dtype), va_static.to(device, dtype),
                                      va_action.to(device), obj.temperature))
    metrics.update(epoch=epoch + 1, phase=epoch_phase, lr=stepper.lr())
    improved = keeps(metrics, state, cfg)
    metrics["best_val_top1"] = state["best_val_top1"]
    state["epoch"] = epoch + 1
    state["history"].append(metrics)
    return metrics, improved


def epoch_line(m: dict[str, Any], total: int, eta: str | None = None) -> str:
    """The one console line of an epoch (with the time left when ``eta`` is given)."""
    parts = [f"epoch {m['epoch']:>3}/{total} [{m['phase']}]"]
    for key, fmt in (("train_loss", "loss {:.4f}"), ("train_l_lc", "L_LC {:.4f}"), ("train_l_t", "L_T {:.3f}"),
                     ("train_l_tad", "L_TAD {:.3f}"), ("train_l_ad", "L_AD {:.3f}"),
                     ("train_l_b", "L_B {:.3f}"), ("val_top1", "val top-1 {:.1f}"),
                     ("val_twin_retrieval", "static twin {:.1f}%"), ("clips_per_s", "{:.0f} clips/s")):
        if key in m:
            parts.append(fmt.format(m[key]))
    if eta is not None:
        parts.append(f"ETA {eta}")
    return "[splavu] " + " | ".join(parts)
