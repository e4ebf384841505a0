"""Ray Train + DeepSpeed worker loop on 2 CPU workers (cached mode, toy feature store), and that it is the
same epoch loop as the one-process replay."""

import json

import pytest
import torch

from splavu_ray.config import load_config
from splavu_ray.distributed.deepspeed_config import deepspeed_config
from splavu_ray.distributed.torch_trainer import export_from_result, fit
from splavu_ray.models.adapter import load_adapter
from splavu_ray.run_folder import RunFolder
from splavu_ray.training.replay import train_in_process

pytestmark = pytest.mark.slow


def toy_config(tmp_path, name, stage=2, epochs=3, head_epochs=2, extra=()):
    return load_config(None, [
        f"run_name={name}", f"output_dir={tmp_path / name}", "adapter.layers=1", "adapter.heads=4",
        "optim.batch_size=16", "optim.base_batch_size=16", "optim.lr=3e-3", f"optim.epochs={epochs}",
        f"optim.head_epochs={head_epochs}", "optim.warmup_epochs=0", "loss.w_lc=10", "loss.w_b=1",
        f"deepspeed.zero_stage={stage}", "scaling.num_workers=2", *extra,
    ])


def test_deepspeed_config_generated_from_project_config(tmp_path):
    cfg = toy_config(tmp_path, "ds", stage=3)
    ds = deepspeed_config(cfg, 2)
    assert ds["train_batch_size"] == 16 and ds["train_micro_batch_size_per_gpu"] == 8
    assert ds["zero_optimization"]["stage"] == 3 and ds["gradient_clipping"] == 1.0
    assert ds["bf16"]["enabled"] is False
    assert deepspeed_config(load_config(None, ["scaling.use_gpu=true"]), 2)["bf16"]["enabled"] is True
    # optim.grad_clip=0 disables clipping in DeepSpeed too (whose own default would clip at 1.0)
    assert deepspeed_config(load_config(None, ["optim.grad_clip=0"]), 2)["gradient_clipping"] == 0


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_zero_stage_trains_and_checkpoints_roundtrip(ray_session, toy_store, tmp_path, stage):
    # stage 0 also exports by train.select=last (the final epoch) instead of the best val top-1
    # stage 3 also partitions separate head / adapter lr groups (optim.head_lr_scale)
    extra = {0: ["train.select=last"], 3: ["optim.head_lr_scale=10"]}.get(stage, [])
    cfg = toy_config(tmp_path, f"zero{stage}", stage=stage, extra=extra)
    result = fit(cfg, toy_store.root, ["train"], ["val"])
    assert result.error is None
    out = export_from_result(result, RunFolder(tmp_path / "export"))
    hist = out["state"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    # heads phase: the task loss falls; joint phase: the total objective falls
    assert hist[1]["train_l_t"] < hist[0]["train_l_t"]
    assert hist[-1]["train_loss"] < hist[2]["train_loss"]
    assert {"train_l_lc", "train_l_b", "val_top1", "clips_per_s"} <= set(hist[-1])
    # the consolidated export loads without DeepSpeed/Ray and is no longer the identity
    adapter = load_adapter(out["best_adapter"])
    x = torch.randn(3, 2, 32)
    assert not torch.allclose(adapter(x), x)
    meta = json.loads((out["best_adapter"] / "adapter.json").read_text())["metadata"]
    assert meta["epoch"] == out["state"]["best_epoch"] >= 3
    if stage == 0:
        assert out["state"]["best_epoch"] == 5 and out["state"]["best_val_top1"] == hist[-1]["val_top1"]
    # the Ray checkpoint holds every rank's DeepSpeed state
    with result.checkpoint.as_directory() as d:
        files = {p.name for p in __import__("pathlib").Path(d).rglob("*")}
    assert any("optim_states" in f or "model_states" in f for f in files)


@pytest.mark.parametrize("stepper", ["deepspeed", "torch"])
def test_the_ray_worker_and_the_one_process_replay_run_the_same_epoch_loop(ray_session, toy_store, tmp_path, stepper):
    # One worker, ZeRO-2, fp32: DeepSpeed's engine (deepspeed.single_worker=deepspeed) and plain AdamW + clipping
    # (the default for one worker, no engine) take the same steps on the same batches with the same static-pair
    # draws, so the per-epoch record of both agrees with the one-process replay up to float rounding.
    cfg = toy_config(tmp_path, "same-loop", stage=2, epochs=2, head_epochs=1,
                     extra=["scaling.num_workers=1", f"deepspeed.single_worker={stepper}"])
    result = fit(cfg, toy_store.root, ["train"], ["val"])
    assert result.error is None
    state = export_from_result(result, RunFolder(tmp_path / "export"))["state"]
    assert state["timing"]["stepper"] == stepper
    ray_hist = state["history"]
    replay = train_in_process(cfg, toy_store).state["history"]
    assert [h["phase"] for h in ray_hist] == [h["phase"] for h in replay] == ["heads", "joint", "joint"]
    for ray_epoch, one_process in zip(ray_hist, replay, strict=True):
        for key in ("train_loss", "train_l_t", "train_l_b", "val_top1", "val_nt_xent"):
            if key in one_process:
                assert ray_epoch[key] == pytest.approx(one_process[key], rel=1e-3, abs=1e-4), (key, ray_epoch["epoch"])

