"""The plain-PyTorch training pieces the worker loop and the replay share."""

import torch

from splavu_ray.config import load_config
from splavu_ray.models.adapter import adapter_from_config
from splavu_ray.training.model import SplavuModel
from splavu_ray.training.schedule import lr_lambda, param_groups


def _model():
    cfg = load_config(None, ["adapter.layers=1", "adapter.heads=4"])
    return SplavuModel(adapter_from_config(32, cfg.adapter), num_actions=5)


def test_param_groups_split_heads_from_adapter_and_decay_from_no_decay():
    model = _model()
    groups = param_groups(model, weight_decay=0.05, lr=1e-3, head_lr_scale=10.0)
    ids = {id(p) for p in model.parameters()}
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(ids)  # each parameter exactly once
    adapter_ids = {id(p) for p in model.adapter.parameters()}
    for g in groups:
        in_adapter = {id(p) in adapter_ids for p in g["params"]}
        assert len(in_adapter) == 1
        assert g["lr"] == (1e-3 if in_adapter.pop() else 1e-2)
        assert g["weight_decay"] == (0.05 if all(p.ndim >= 2 for p in g["params"]) else 0.0)
        assert all(p.ndim >= 2 for p in g["params"]) or all(p.ndim < 2 for p in g["params"])


def test_schedule_scales_each_group_from_its_own_lr():
    model = _model()
    opt = torch.optim.AdamW(param_groups(model, 0.0, 1e-3, head_lr_scale=4.0), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, 10, 2, "cosine", 0.0))
    for _ in range(5):
        opt.step(), sched.step()
    ratios = {round(g["lr"] / g["initial_lr"], 6) for g in opt.param_groups}
    assert len(ratios) == 1  # one schedule for all groups
    assert {g["initial_lr"] for g in opt.param_groups} == {1e-3, 4e-3}
