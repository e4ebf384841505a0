"""Feature-extraction throughput of the true-size V-JEPA 2 ViT-H on one GPU: clips/s and model FLOPs
utilisation (MFU) over batch sizes, bf16, random weights.

    python benchmarks/gpu_extract.py                                  # batch sizes 1 2 4 8 16 32 64
    python benchmarks/gpu_extract.py --batch-sizes 8 32 --out outputs/bench/gpu_extract.json
    python benchmarks/gpu_extract.py --peak-tflops 989                # a card the table below does not know

The model is ``facebook/vjepa2-vith-fpc64-256`` built from its transformers config (:func:`vith_config`,
written to ``--config-dir`` as ``config.json``, so it can be checked against the hub's) with random weights:
no hub access is needed, and speed does not depend on the weights. It runs the way feature extraction
runs it (``splavu_ray.models.backbone.FrozenBackbone``: the encoder without its predictor, mean pooling,
``backbone.dtype=auto`` = bf16 on a GPU), on clips of ``data.clip_len`` (16) frames at the side
``configs/vjepa2_vith.yaml`` sets (224): 8 x 14 x 14 = 1568 tokens a clip.

Two figures per batch size:
- ``model``: the forward pass alone, on normalised clips already on the GPU: clips/s and MFU, where
  MFU = clips/s x FLOPs per clip / the card's peak dense bf16 FLOP/s. FLOPs per clip are counted, not
  estimated: ``torch.utils.flop_counter.FlopCounterMode`` over one forward (matmuls and attention).
- ``embed path`` (``--embed-path``, on by default): what ``models/embedder.py`` does per batch: uint8
  frames on the CPU (decoded at the eval resize, 256 px), ``eval_transform`` on the CPU, copy to the GPU,
  forward. The gap between the two says how much one decode/transform process leaves the GPU waiting.

Without CUDA it exits with status 2 and says so; ``--count-only`` counts parameters and FLOPs on the meta
device (no GPU, no memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HUB_ID = "facebook/vjepa2-vith-fpc64-256"

# Peak dense (no sparsity) bf16 tensor-core TFLOP/s from the vendors' data sheets, matched against
# torch.cuda.get_device_name() in this order (first match wins).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("RTX 6000 Ada", 364.0),
)


def vith_config():
    """The transformers config of facebook/vjepa2-vith-fpc64-256 (its conversion script's ``vit_huge``:
    width 1280, 32 layers, 16 heads, MLP ratio 4, patch 16, tubelet 2, 256 px, 64 frames; the 12-layer
    384-wide predictor, which feature extraction skips)."""
    from transformers import VJEPA2Config

    return VJEPA2Config(
        crop_size=256, frames_per_clip=64, patch_size=16, tubelet_size=2, hidden_size=1280,
        num_attention_heads=16, num_hidden_layers=32, mlp_ratio=4.0, qkv_bias=True, layer_norm_eps=1e-6,
        hidden_act="gelu", pred_hidden_size=384, pred_num_attention_heads=12, pred_num_hidden_layers=12,
        pred_num_mask_tokens=10, pred_zero_init_mask_tokens=True, num_pooler_layers=3,
    )


def build_vith(device, dtype, config_dir: Path | None = None, seed: int = 0):
    """FrozenBackbone around a random-weight ViT-H built from ``config.json`` in ``config_dir`` (written
    there first), initialised directly on ``device``."""
    import torch
    from transformers import VJEPA2Config, VJEPA2Model

    from splavu_ray.models.backbone import FrozenBackbone

    if config_dir is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        vith_config().save_pretrained(config_dir)
        config = VJEPA2Config.from_pretrained(config_dir)
    else:
        config = vith_config()
    torch.manual_seed(seed)
    with torch.device(device):
        encoder = VJEPA2Model(config)
    return FrozenBackbone(encoder, "vjepa2", "mean", None, dtype, name=f"random weights, {HUB_ID} config")


def peak_tflops(name: str) -> float | None:
    return next((tf for key, tf in PEAK_BF16_TFLOPS if key.lower() in name.lower()), None)


def count_flops(backbone, clips) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        backbone(clips)
    return int(counter.get_total_flops())


def time_forward(backbone, clips, iters: int, warmup: int) -> float:
    """Seconds per forward (CUDA-synchronised mean over ``iters`` after ``warmup``)."""
    import torch

    for _ in range(warmup):
        backbone(clips)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        backbone(clips)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def time_embed_path(backbone, frames_uint8, size: int, iters: int, warmup: int) -> float:
    """Seconds per batch of Embedder._embed's work: CPU eval_transform of uint8 clips, copy, forward."""
    import torch

    from splavu_ray.data.transforms import eval_transform

    def once():
        x = eval_transform(frames_uint8, size)
        return backbone(x.to("cuda", non_blocking=False)).float().cpu()

    for _ in range(warmup):
        once()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        once()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--frames", type=int, default=16, help="frames per clip (data.clip_len)")
    ap.add_argument("--image-size", type=int, default=224, help="backbone.image_size (configs/vjepa2_vith.yaml)")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's peak dense bf16 TFLOP/s "
                    "(default: looked up by torch.cuda.get_device_name)")
    ap.add_argument("--no-embed-path", dest="embed_path", action="store_false",
                    help="skip timing the CPU transform + copy + forward path")
    ap.add_argument("--config-dir", default=None, help="where config.json is written (default: a temp dir)")
    ap.add_argument("--count-only", action="store_true", help="only count parameters and FLOPs per clip, on the "
                    "meta device (shapes, no memory, no GPU needed), and exit")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)

    import torch

    if args.count_only:
        backbone = build_vith("meta", torch.bfloat16)
        params = sum(p.numel() for p in backbone.encoder.encoder.parameters())
        clip = torch.randn(1, args.frames, 3, args.image_size, args.image_size, device="meta")
        print(f"ViT-H encoder: {params / 1e6:.1f}M parameters; {count_flops(backbone, clip) / 1e12:.3f} TFLOPs per "
              f"{args.frames}-frame {args.image_size}px clip (FlopCounterMode on the meta device)")
        return 0
    if not torch.cuda.is_available():
        print(f"gpu_extract: no CUDA device (torch {torch.__version__}, torch.version.cuda={torch.version.cuda}, "
              f"torch.cuda.is_available() is False). This benchmark measures a GPU; run it on a machine with one "
              f"(benchmarks/gpu_check.sh).", file=sys.stderr)
        return 2

    import tempfile

    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(name)
    config_dir = Path(args.config_dir) if args.config_dir else Path(tempfile.mkdtemp(prefix="vith-config-"))
    t0 = time.perf_counter()
    backbone = build_vith("cuda", torch.bfloat16, config_dir)
    params = sum(p.numel() for p in backbone.encoder.encoder.parameters())
    print(f"[gpu_extract] {name}; peak bf16 {peak or 'unknown (pass --peak-tflops)'} TFLOP/s; ViT-H encoder "
          f"{params / 1e6:.1f}M parameters (config {config_dir / 'config.json'}), built in "
          f"{time.perf_counter() - t0:.1f} s; clips {args.frames} x {args.image_size}^2", flush=True)

    one = torch.randn(1, args.frames, 3, args.image_size, args.image_size, device="cuda")
    flops_per_clip = count_flops(backbone, one)
    print(f"[gpu_extract] {flops_per_clip / 1e12:.3f} TFLOPs per clip (FlopCounterMode, one forward)", flush=True)

    rows = []
    short = round(args.image_size * 256 / 224)
    for bs in args.batch_sizes:
        row: dict = {"batch_size": bs}
        try:
            torch.cuda.reset_peak_memory_stats()
            clips = torch.randn(bs, args.frames, 3, args.image_size, args.image_size, device="cuda")
            sec = time_forward(backbone, clips, args.iters, args.warmup)
            row.update(model_s_per_batch=sec, model_clips_per_s=bs / sec,
                       peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
            if peak:
                row["mfu"] = bs / sec * flops_per_clip / (peak * 1e12)
            if args.embed_path:
                frames = torch.randint(0, 256, (bs, args.frames, short, short, 3), dtype=torch.uint8)
                esec = time_embed_path(backbone, frames, args.image_size, max(2, args.iters // 2), 1)
                row.update(embed_s_per_batch=esec, embed_clips_per_s=bs / esec)
            del clips
        except torch.cuda.OutOfMemoryError:
            row["error"] = "out of memory"
            torch.cuda.empty_cache()
        rows.append(row)
        mfu = f"{row['mfu']:.1%}" if "mfu" in row else "n/a"
        print(f"[gpu_extract] batch {bs:4d}: " + (row.get("error") or
              f"model {row['model_clips_per_s']:8.1f} clips/s, MFU {mfu}, peak mem {row['peak_mem_gib']:.1f} GiB"
              + (f"; embed path {row['embed_clips_per_s']:7.1f} clips/s" if "embed_clips_per_s" in row else "")),
              flush=True)
        if "error" in row:
            break

    print("\n| batch | model clips/s | MFU | peak GPU memory (GiB) | embed path clips/s (CPU transform) |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['batch_size']} | {r['error']} | | | |")
            continue
        print(f"| {r['batch_size']} | {r['model_clips_per_s']:.1f} | "
              f"{(format(r['mfu'], '.1%') if 'mfu' in r else 'n/a')} | {r['peak_mem_gib']:.1f} | "
              f"{(format(r['embed_clips_per_s'], '.1f') if 'embed_clips_per_s' in r else '-')} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({
            "device": name, "peak_bf16_tflops": peak, "encoder_parameters": params,
            "flops_per_clip": flops_per_clip, "frames": args.frames, "image_size": args.image_size, "rows": rows,
            "torch": torch.__version__, "cuda": torch.version.cuda, "machine": platform.platform(),
            "cpus": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
