"""Checks that need a CUDA device (``pytest -m gpu``; benchmarks/gpu_check.sh runs them): bf16 feature
extraction against fp32, one DeepSpeed training run on one GPU, and the online pipeline feeding a GPU.
Each skips with a reason when ``torch.cuda.is_available()`` is False. The last test runs everywhere: the
GPU benchmark must exit with a clear message on a machine without CUDA."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from splavu_ray.config import BackboneConfig, load_config
from splavu_ray.data.transforms import eval_transform
from splavu_ray.models.backbone import build_backbone

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device: torch.cuda.is_available() is False"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

# bf16 vs fp32 pooled features of the same clips: the least cosine similarity accepted, per clip. Measured on
# the CPU for the tiny encoder: 1.0000 (4 clips); the 32-layer ViT-H accumulates more rounding.
COSINE_TINY, COSINE_VITH = 0.995, 0.99


def _gpu_extract():
    spec = importlib.util.spec_from_file_location("gpu_extract", REPO / "benchmarks" / "gpu_extract.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_ray():
    """A local Ray with the GPU, whose workers run DeepSpeed on CUDA (the test conftest says cpu)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=min(4, os.cpu_count() or 1), num_gpus=1, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"DS_ACCELERATOR": "cuda", "PYTHONUNBUFFERED": "1"}})
    yield ray
    ray.shutdown()


@pytest.mark.gpu
@needs_cuda
def test_bf16_extraction_matches_fp32():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (4, 16, 73, 73, 3), dtype=torch.uint8, generator=gen)
    clips = eval_transform(frames, 64).cuda()
    fp32 = build_backbone(BackboneConfig(source="builtin:tiny-vjepa2", dtype="float32"), "cuda")(clips)
    bf16 = build_backbone(BackboneConfig(source="builtin:tiny-vjepa2", dtype="auto"), "cuda")  # auto: bf16 on GPU
    assert bf16.compute_dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(fp32, bf16(clips), dim=-1)
    assert cos.min() >= COSINE_TINY, cos.tolist()

    # the true-size ViT-H (random weights): the same weights run in fp32, then cast to bf16
    vith = _gpu_extract().build_vith("cuda", torch.float32)
    x = torch.randn(2, 16, 3, 224, 224, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    ref = vith(x)
    vith.to(torch.bfloat16)
    vith.compute_dtype = torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(ref, vith(x), dim=-1)
    assert ref.shape == (2, 1280) and cos.min() >= COSINE_VITH, cos.tolist()


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_deepspeed_trains_on_one_gpu(gpu_ray, toy_store, tmp_path):
    from splavu_ray.distributed.torch_trainer import export_from_result, fit
    from splavu_ray.run_folder import RunFolder

    cfg = load_config(None, [
        "run_name=gpu-ds", f"output_dir={tmp_path / 'gpu-ds'}", "adapter.layers=1", "adapter.heads=4",
        "optim.batch_size=16", "optim.base_batch_size=16", "optim.epochs=1", "optim.head_epochs=1",
        "optim.warmup_epochs=0", "deepspeed.zero_stage=2", "scaling.num_workers=1", "scaling.use_gpu=true",
        "scaling.cpus_per_worker=1",
    ])
    result = fit(cfg, toy_store.root, ["train"], ["val"])
    assert result.error is None, result.error
    state = export_from_result(result, RunFolder(tmp_path / "export"))["state"]
    assert state["timing"]["stepper"] == "deepspeed"  # bf16 on a GPU always steps through the engine
    hist = state["history"]
    assert [h["phase"] for h in hist] == ["heads", "joint"]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in hist)


@pytest.mark.gpu
@pytest.mark.slow
@needs_cuda
def test_online_pipeline_feeds_a_gpu(gpu_ray, tmp_path):
    from splavu_ray.data.sources import resolve_manifests
    from splavu_ray.distributed.torch_trainer import export_from_result, fit
    from splavu_ray.run_folder import RunFolder

    cfg = load_config(None, [
        "train.mode=online", "backbone.source=random:tiny", "backbone.image_size=32", "data.clip_len=8",
        "data.synthetic.resolution=32", "data.synthetic.num_frames=16",
        "data.synthetic.videos_per_split={pretrain: 1, train: 16, val: 4, test: 1}",
        "data.synthetic.privacy_images={train: 1, test: 1}", "data.synthetic.untrimmed_videos={train: 1, test: 1}",
        "data.num_static_frames=4", "data.num_eval_clips=2", "data.decode_workers=1", "data.decode_batch_size=4",
        "adapter.layers=1", "adapter.heads=4", "optim.batch_size=8", "optim.base_batch_size=8",
        "optim.epochs=1", "optim.head_epochs=1", "optim.warmup_epochs=0", "scaling.num_workers=1",
        "scaling.cpus_per_worker=1", "scaling.use_gpu=true", "run_name=gpu-online",
        f"output_dir={tmp_path / 'out'}", f"data.cache_dir={tmp_path / 'cache'}",
    ])
    manifest = resolve_manifests(cfg)["main"]
    result = fit(cfg, None, ["train"], ["val"], manifest_path=manifest)
    assert result.error is None, result.error
    hist = export_from_result(result, RunFolder(tmp_path / "export"))["state"]["history"]
    assert [h["stream_steps"] for h in hist] == [2, 2] and all(h["clips_per_s"] > 0 for h in hist)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_gpu_benchmark_says_so_without_cuda():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_extract.py")], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr, proc.stderr[-2000:]
