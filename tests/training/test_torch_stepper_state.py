"""The plain-torch stepper's checkpoint (what a one-worker Ray Train run saves instead of a DeepSpeed engine's):
safetensors + JSON, and a run resumed from it takes exactly the steps of an uninterrupted one."""

import json

import pytest
import torch
from toy import make_toy_store

from splavu_ray.config import load_config
from splavu_ray.training.batches import CachedSource
from splavu_ray.training.loop import (
    TORCH_STATE_JSON,
    TORCH_STATE_TENSORS,
    TorchStepper,
    new_state,
    run_epoch,
    steps_per_epoch,
)
from splavu_ray.training.model import build_model
from splavu_ray.training.schedule import build_optimizer
from splavu_ray.training.steps import Objective


def _setup(cfg, store):
    torch.manual_seed(cfg.seed)
    source = CachedSource(store, ["train"], ["val"], cfg)
    model = build_model(cfg, source)
    optimizer, scheduler = build_optimizer(model, cfg.optim, steps_per_epoch(source.num_train, cfg))
    return source, model, TorchStepper(model, optimizer, scheduler, cfg.optim.grad_clip)


def test_a_run_resumed_from_the_torch_state_repeats_the_uninterrupted_run(tmp_path):
    store = make_toy_store(tmp_path / "store")
    cfg = load_config(None, ["adapter.layers=1", "adapter.heads=4", "optim.batch_size=16", "optim.base_batch_size=16",
                             "optim.epochs=2", "optim.head_epochs=1", "optim.warmup_epochs=1", "loss.w_lc=10"])
    obj = Objective.from_config(cfg)

    source, model, stepper = _setup(cfg, store)
    whole = new_state()
    for epoch in range(3):
        run_epoch(model, stepper, source, epoch, cfg, obj, whole)

    source, model, stepper = _setup(cfg, store)
    first = new_state()
    for epoch in range(2):
        run_epoch(model, stepper, source, epoch, cfg, obj, first)
    stepper.save(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {TORCH_STATE_TENSORS, TORCH_STATE_JSON}
    json.loads((tmp_path / "ckpt" / TORCH_STATE_JSON).read_text())  # plain JSON, no pickle anywhere

    torch.manual_seed(123)  # a fresh process: other initial weights, which the load replaces
    source, model, stepper = _setup(cfg, store)
    stepper.load(tmp_path / "ckpt")
    resumed = first
    run_epoch(model, stepper, source, 2, cfg, obj, resumed)
    for key in ("train_loss", "train_l_b", "val_top1", "lr"):
        assert resumed["history"][2][key] == whole["history"][2][key], key


def test_loading_a_folder_without_torch_state_names_the_problem(tmp_path):
    store = make_toy_store(tmp_path / "store")
    cfg = load_config(None, ["adapter.layers=1", "adapter.heads=4", "optim.batch_size=16"])
    _, _, stepper = _setup(cfg, store)
    with pytest.raises(FileNotFoundError, match="single_worker=deepspeed"):
        stepper.load(tmp_path)
