"""The online source of a pixel anonymizer run (``train.anonymizer=pixel_unet``): frames AND raw features.

f_P sits in front of the frozen encoder, so a step needs the frames themselves (which f_P anonymizes and the
encoder embeds, with gradients into f_P) besides their raw features (what the heads-first phase trains on and
the latent-consistency term compares with). :class:`PixelOnlineSource` is the online source with both: each
batch carries the augmented clip frames and the static frames, exactly those the raw features were embedded
from. Validation keeps frames only (the validation metrics run f_P + encoder every epoch): the middle one of
``data.num_eval_clips`` clips per video and the two static frames the metrics compare, as float32, so a
worker holds (val videos) x (clip_len + 2) frames of S x S in memory.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.transforms import eval_transform, train_transform
from ..training.model import Batch
from .online_source import OnlineSource


class PixelOnlineSource(OnlineSource):
    """:class:`OnlineSource` whose batches also hold the frames (``Batch.frames``, ``Batch.static_frames``)."""

    def _static_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W, 3) uint8 -> (B, K, 3, S, S) normalised (the eval crop of each frame)."""
        b, k = frames.shape[:2]
        return eval_transform(frames.reshape(b * k, 1, *frames.shape[2:]), self.size).reshape(b, k, 3, self.size,
                                                                                              self.size)

    @torch.no_grad()
    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.to(self.device)).cpu()

    def _batch(self, b: dict[str, Any], gen: torch.Generator) -> Batch:
        x = train_transform(b["clips"], self.size, generator=gen)  # (B, T, 3, S, S), the same draws as raw mode
        s = self._static_frames(b["static"])  # (B, K, 3, S, S)
        # No raw static features: no term of f_P's steps reads them (the heads-first phase reads the raw clip
        # features, the budget term f_P's own static features), so Batch.static is zeros and costs no encoder pass
        static = torch.zeros(s.shape[0], s.shape[1], self.dim)
        return Batch(self._raw(x).unsqueeze(1), static, b["action_id"].long(), frames=x.unsqueeze(1), static_frames=s)

    def validation(self):
        # (clip frames (N, 1, T, 3, S, S), static frames (N, 2, 3, S, S), actions (N,)): the model anonymizes
        # them each epoch; the two static frames are the ones validation_metrics pairs (first and middle)
        if self._val is None:
            clips, static, action = [], [], []
            k = self.cfg.data.num_static_frames
            for b in self.val_shard.iter_torch_batches(batch_size=16, drop_last=False):
                c = b["clips"]  # (B, C, T, H, W, 3)
                clips.append(eval_transform(c[:, c.shape[1] // 2], self.size).unsqueeze(1))
                static.append(self._static_frames(b["static"][:, [0, k // 2]]))
                action.append(b["action_id"].long())
            if not clips:
                raise ValueError("online mode: no validation video could be decoded (see rejects.jsonl)")
            self._val = (torch.cat(clips), torch.cat(static), torch.cat(action))
        return self._val
