"""What trains, and what it trains on: f_A with its task heads, and the batches of one step.

``SplavuModel`` holds f_A and the heads (action; TAD and anomaly when co-training). In a Ray Train
worker one DeepSpeed engine wraps it (splavu_ray.distributed.worker); in one process it trains as a
plain module (splavu_ray.training.replay). Everything goes through ``forward`` so ZeRO-3 can gather
parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..config import AnomalyTaskConfig, Config, TADTaskConfig
from ..models.adapter import AnonymizingAdapter, adapter_from_config
from ..models.heads import ActionHead, AnomalyHead, TADHead, TADOutput
from ..models.pixel_anonymizer import PixelFeatureBranch


@dataclass
class SequenceBatch:
    """Untrimmed videos for the TAD / AD heads: padded window features and their weak or strong labels."""

    feats: torch.Tensor  # (B, L, d) raw window features
    mask: torch.Tensor  # (B, L) True on valid windows
    labels: torch.Tensor  # TAD: (B, S) segment classes (-1 = padding); AD: (B,) video labels
    segments: torch.Tensor | None = None  # TAD: (B, S, 2) segments in windows

    def to(self, device, dtype=None) -> "SequenceBatch":
        seg = self.segments.to(device) if self.segments is not None else None
        return SequenceBatch(self.feats.to(device, dtype), self.mask.to(device), self.labels.to(device), seg)


class ModelOutput(NamedTuple):
    z: torch.Tensor | None  # f_A(clips)
    zs: torch.Tensor | None  # f_A(static clips)
    logits: torch.Tensor  # action logits
    tad: TADOutput | None = None
    ad: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (logits, magnitudes, features)


class SplavuModel(nn.Module):
    """Everything that trains: f_A and the task heads (one DeepSpeed engine holds all of it).

    The TAD and AD heads exist only when their task is on (tad_classes > 0, anomaly=True), so a run with
    both weights at 0 has exactly the parameters (and checkpoints) of an action-only run.
    """

    def __init__(self, adapter: AnonymizingAdapter, num_actions: int, tad_classes: int = 0, anomaly: bool = False,
                 tad: TADTaskConfig | None = None, ad: AnomalyTaskConfig | None = None):
        super().__init__()
        tad, ad = tad or TADTaskConfig(), ad or AnomalyTaskConfig()
        self.adapter = adapter
        self.action_head = ActionHead(adapter.dim, num_actions)
        self.tad_head = TADHead(adapter.dim, tad_classes, tad.hidden, tad.levels) if tad_classes else None
        self.ad_head = AnomalyHead(adapter.dim, ad.hidden) if anomaly else None

    def forward(self, clips: torch.Tensor, static: torch.Tensor | None = None, raw_heads: bool = False,
                tad: SequenceBatch | None = None, ad: SequenceBatch | None = None,
                frames: torch.Tensor | None = None) -> ModelOutput:
        """Everything goes through forward so ZeRO-3 can gather parameters.

        frames: with a pixel anonymizer in f_A's place (train.anonymizer=pixel_unet) the clips' frames, which it
        anonymizes (``clips`` stay the raw features the heads-first phase reads; ``static`` are then static
        frames). Without ``frames`` the anonymizer reads ``clips``.

        raw_heads: the heads-first phase; the heads see RAW features and f_A's output is multiplied by
        zero (every parameter stays in the graph, as ZeRO's gradient hooks expect) so f_A is untouched.
        """
        if (tad is not None) != (self.tad_head is not None) and self.training:
            raise ValueError("TAD inputs and the TAD head go together (loss.w_tad > 0 needs TAD batches)")
        if (ad is not None) != (self.ad_head is not None) and self.training:
            raise ValueError("AD inputs and the AD head go together (loss.w_ad > 0 needs AD batches)")
        if raw_heads:
            anchor = self.adapter(clips[:, :1] if frames is None else frames[:1]).sum() * 0.0
            f = lambda seq: seq.feats  # noqa: E731
            z = zs = None
            logits = self.action_head(clips) + anchor
        else:
            f = lambda seq: self.adapter(seq.feats, ~seq.mask)  # noqa: E731
            z = self.adapter(clips if frames is None else frames)
            zs = self.adapter(static) if static is not None else None
            logits = self.action_head(z)
        tad_out = self.tad_head(f(tad), tad.mask) if tad is not None and self.tad_head is not None else None
        ad_out = self.ad_head(f(ad), ad.mask) if ad is not None and self.ad_head is not None else None
        return ModelOutput(z, zs, logits, tad_out, ad_out)


@dataclass
class Batch:
    clips: torch.Tensor  # (B, L, d) raw clip features of each video
    static: torch.Tensor  # (B, K, d) raw static-clip features of each video
    action: torch.Tensor  # (B,) int64
    tad: SequenceBatch | None = None  # untrimmed videos with segments (co-training TAD)
    ad: SequenceBatch | None = None  # untrimmed videos with video labels (co-training AD)
    frames: torch.Tensor | None = None  # (B, L, T, 3, S, S) the clips' frames (pixel anonymizer only)
    static_frames: torch.Tensor | None = None  # (B, K, 3, S, S) the static frames (pixel anonymizer only)

    def to(self, device, dtype=None) -> "Batch":
        opt = lambda t: t.to(device, dtype) if t is not None else None  # noqa: E731
        return Batch(self.clips.to(device, dtype), self.static.to(device, dtype), self.action.to(device),
                     opt(self.tad), opt(self.ad), opt(self.frames), opt(self.static_frames))

    @property
    def num_windows(self) -> int:
        """Untrimmed windows in this batch (throughput accounting)."""
        return sum(int(s.mask.sum()) for s in (self.tad, self.ad) if s is not None)


def build_model(cfg: Config, source) -> SplavuModel:
    """f_A and the heads the source's tasks need (the Ray Train worker builds the same); only a cached
    source can co-train TAD / anomaly heads."""
    anonymizer = (PixelFeatureBranch(source.backbone, cfg.data.clip_len, cfg.pixel_unet.width, cfg.pixel_unet.depth)
                  if cfg.train.anonymizer == "pixel_unet" else adapter_from_config(source.dim, cfg.adapter))
    return SplavuModel(anonymizer, source.num_actions,
                       tad_classes=getattr(source, "tad_classes", 0), anomaly=bool(getattr(source, "ad_videos", None)),
                       tad=cfg.eval.tad, ad=cfg.eval.anomaly)
