"""Pretrain the built-in tiny V-JEPA 2 that stands in for a foundation model in the demo.

    python -m splavu_ray.pretrain_backbone [--epochs 12] [--out splavu_ray/assets/tiny-vjepa2]

A random-initialised tiny encoder carries neither action nor appearance information, so no privacy
effect could be seen with it. Like a real foundation model, this one is trained (supervised, action
CE + private-attribute BCE on mean-pooled tokens) on a split of the built-in data -- ``pretrain`` --
that SPLAVU never trains or evaluates on, then saved as safetensors + config.json and loaded frozen
like any downloaded checkpoint (backbone.source=builtin:tiny-vjepa2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import SyntheticConfig
from .models.backbone import BUILTIN_DIR, POOLER_FILE, AttentivePooler, save_encoder, tiny_vjepa2_config


def load_split(manifest_path: str, split: str, size: int, clip_len: int):
    """Decode every video of a split once: uint8 (N, F, H, W, 3), actions, attribute matrix."""
    from .data.decode import decode_video
    from .data.manifest import read_manifest

    m = read_manifest(manifest_path).split(split)
    frames = [decode_video(r["uri"], size=size).frames for r in m.rows()]
    n = min(len(f) for f in frames)
    if n < clip_len:
        raise ValueError(f"pretraining needs videos of >= {clip_len} frames, found {n}")
    videos = np.stack([f[:n] for f in frames])
    actions = m.table["action_id"].to_numpy()
    return videos, actions, m.attribute_matrix(), m


def pretrain(manifest_path: str, out: Path, epochs: int = 20, batch_size: int = 16, lr: float = 1e-3,
             seed: int = 0, size: int = 64, clip_len: int = 16, val_fraction: float = 0.15,
             encoder_overrides: dict | None = None, attentive: bool = True) -> dict:
    from transformers import VJEPA2Model

    from .data.transforms import eval_transform
    from .metrics.classification import chance_cmap, cmap, top1

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    videos, actions, attrs, manifest = load_split(manifest_path, "pretrain", size, clip_len)
    actions, attrs = actions.copy(), attrs.copy()
    n = len(videos)
    order = torch.randperm(n, generator=gen).numpy()
    n_val = max(8, int(n * val_fraction))
    val_idx, tr_idx = order[:n_val], order[n_val:]
    enc_cfg = tiny_vjepa2_config(size, clip_len)
    for k, v in (encoder_overrides or {}).items():
        setattr(enc_cfg, k, v)
    encoder = VJEPA2Model(enc_cfg)
    dim = encoder.config.hidden_size
    heads = nn.ModuleDict({"action": nn.Linear(dim, len(manifest.actions)), "attr": nn.Linear(dim, attrs.shape[1])})
    pooler = AttentivePooler(enc_cfg) if attentive else None
    params = list(encoder.encoder.parameters()) + list(heads.parameters()) + (list(pooler.parameters()) if pooler else [])
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    steps = epochs * (len(tr_idx) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    y_act, y_att = torch.from_numpy(actions).long(), torch.from_numpy(attrs)

    def embed(x):
        tokens = encoder(pixel_values_videos=x, skip_predictor=True).last_hidden_state
        return pooler(tokens) if pooler is not None else tokens.mean(1)

    def clip_batch(idx, train: bool):
        starts = (torch.randint(0, videos.shape[1] - clip_len + 1, (len(idx),), generator=gen).tolist() if train
                  else [(videos.shape[1] - clip_len) // 2] * len(idx))
        x = eval_transform(torch.stack([torch.from_numpy(videos[i, s:s + clip_len]) for i, s in zip(idx, starts)]), size)
        if train:  # cheap batched augmentation: random shift (pad + crop) and horizontal flip
            pad = size // 8
            xp = nn.functional.pad(x.flatten(0, 1), (pad, pad, pad, pad), mode="replicate").unflatten(0, x.shape[:2])
            out = torch.empty_like(x)
            for b in range(len(idx)):
                dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
                out[b] = xp[b, :, :, dy:dy + size, dx:dx + size]
                if torch.rand(1, generator=gen).item() < 0.5:
                    out[b] = out[b].flip(-1)
            x = out
        return x

    t0 = time.time()
    for epoch in range(epochs):
        encoder.train()
        perm = tr_idx[torch.randperm(len(tr_idx), generator=gen).numpy()]
        losses, ce_sum = [], 0.0
        for s in range(len(perm) // batch_size):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            f = embed(clip_batch(idx, True))
            loss = nn.functional.cross_entropy(heads["action"](f), y_act[idx]) + \
                nn.functional.binary_cross_entropy_with_logits(heads["attr"](f), y_att[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            ce_sum = ce_sum + nn.functional.cross_entropy(heads["action"](f.detach()), y_act[idx]).item()
        print(f"[pretrain] epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f} action CE {ce_sum / max(1, len(losses)):.3f} ({time.time() - t0:.0f}s)",
              file=sys.stderr, flush=True)

    encoder.eval()
    if pooler is not None:
        pooler.eval()
    with torch.no_grad():
        f = torch.cat([embed(clip_batch(val_idx[i:i + 32], False)) for i in range(0, len(val_idx), 32)])
        act = top1(heads["action"](f).numpy(), actions[val_idx])
        att = cmap(torch.sigmoid(heads["attr"](f)).numpy(), attrs[val_idx])
    report = {"data": "built-in synthetic, split 'pretrain'", "videos": int(n), "held_out": int(n_val),
              "epochs": epochs, "seconds": round(time.time() - t0, 1),
              "held_out_action_top1": round(act, 2), "held_out_attribute_cmap": round(att, 2),
              "attribute_chance_cmap": round(chance_cmap(attrs[val_idx]), 2), "seed": seed}
    report["pooling"] = "attentive" if pooler is not None else "mean"
    save_encoder(encoder, out, extra=report)
    if pooler is not None:  # the frozen attentive probe pooler, as V-JEPA ships with its evals
        from safetensors.torch import save_file

        save_file({f"pooler.{k}": v.contiguous() for k, v in pooler.inner.state_dict().items()},
                  str(Path(out) / POOLER_FILE))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splavu_ray.pretrain_backbone", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BUILTIN_DIR / "tiny-vjepa2")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--videos", type=int, default=1200, help="size of the synthetic 'pretrain' split")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--cache-dir", default="~/.cache/splavu_ray")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import os

    from .data.synthetic import ensure_synthetic

    # Same generator and seed as the demo data; only the pretrain split (whose subjects never appear
    # in train/val/test) is larger, since a ViT learns motion only from enough videos.
    default = SyntheticConfig()
    cfg = SyntheticConfig(videos_per_split={**default.videos_per_split, "pretrain": args.videos})
    manifest = ensure_synthetic(cfg, os.path.expanduser(args.cache_dir))
    report = pretrain(str(manifest), args.out, epochs=args.epochs, seed=args.seed, lr=args.lr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
