"""Online mode's batch source: clips decoded by Ray Data, embedded by the frozen backbone inside the worker.

Lives in a Ray Train worker (it reads the worker's dataset shards); the epoch loop sees it as any other
source, with ``batches(epoch)`` and ``validation()``.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ..config import Config
from ..data.transforms import eval_transform, train_transform
from ..models.backbone import build_backbone, describe
from ..training.model import Batch
from .clip_stream import iter_train_batches


class StreamEpochs:
    """Cuts ONE iterator over a multi-epoch stream of batches into training epochs of ``steps`` batches.

    Streaming epochs: training epoch k is the k-th run of ``steps`` batches of the stream, not exactly
    "the rows tagged k"; ``other_epoch`` counts the rows it took from other epochs. The decode actors do not
    preserve order, so a few rows of epoch k+1 can come before the last rows of k. And the two drift apart
    by the difference between the rows an epoch of the stream holds and the rows ``steps`` batches take:
    the trainer uses ``num_train // batch_size`` steps, so the remainder (``num_train % batch_size`` rows)
    makes training lag behind the stream's epochs, and rejected videos make it run ahead. Running ahead,
    the stream runs dry before the last epoch ends: that epoch ends there and later ones get no batch
    (``dry`` says where); the run takes as many steps in all as one execution per epoch would, where each
    epoch was shorter instead. With a Ray Train shard this keeps the ranks in step:
    ``streaming_split(equal=True)`` gives every rank the same number of rows over the whole stream, so with
    ``drop_last`` every rank has the same number of batches and runs dry at the same step.
    """

    def __init__(self, batches: Iterable[dict[str, Any]], steps: int):
        self._batches, self._it = batches, None
        self.steps = steps
        self.dry: tuple[int, int] | None = None  # (epoch, step) at which the stream ran out
        self.taken = self.rows = self.other_epoch = 0  # of the current epoch

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        if self._it is None:
            self._it = iter(self._batches)  # started once, consumed across every epoch
        self.taken = self.rows = self.other_epoch = 0
        for step in range(self.steps):
            batch = None if self.dry else next(self._it, None)
            if batch is None:
                self.dry = self.dry or (epoch, step)
                return
            self.taken += 1
            self.rows += len(batch["row_index"])
            if "epoch" in batch:
                self.other_epoch += int((batch["epoch"] != epoch).sum())
            yield batch


class OnlineSource:
    """Online mode: Ray Data decodes clips on CPU actors (splavu_ray.distributed.clip_stream); the frozen backbone
    (outside DeepSpeed) embeds them in the loop, after the train augmentation on the uint8 frames.

    Rows arrive as square frames of side round(S * 256/224) (S = the backbone's input side), the eval
    resize of docs/method.md, so validation is the same centre crop the feature store uses; training takes a
    RandomResizedCrop + flip of them. Each video gives one random clip per epoch (L = 1) and two static
    frames drawn from ``data.num_static_frames`` evenly spaced ones (the reference code's 2 of 10).

    The train split is ONE Ray Data execution for the whole run (:class:`TrainStream`: every epoch still
    to run, rows tagged with their epoch), so its decode actors start once, not once per epoch
    (ray#46479). Each rank keeps one iterator over its shard and takes ``num_train // batch_size`` steps
    of ``batch_size // world`` rows from it per epoch (:class:`StreamEpochs`: streaming epochs, whose rows
    can spill into the next epoch; the ``stream_other_epoch`` metric says how many). A clip is a function
    of (seed, video, epoch) also across resumes, since the stream starts at the checkpoint's epoch; the
    order of the rows is not (cached mode is the bit-exact one). Validation is decoded once, before the
    train stream starts: the stream's actors hold their CPUs for the whole run, and validation's own
    decode actors must not wait for them."""

    def __init__(self, num_actions: int, num_train: int, cfg: Config, rank: int, world: int, device):
        import ray.train

        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.backbone = build_backbone(cfg.backbone, device, cfg.data.clip_len)
        self.size = self.backbone.image_size
        self.dim, self.num_actions, self.num_train = self.backbone.embed_dim, num_actions, num_train
        self.meta = {"backbone": describe(self.backbone)}
        self.train_shard = ray.train.get_dataset_shard("train")
        self.val_shard = ray.train.get_dataset_shard("val")
        self._val = None
        self.validation()  # now, while no train decode actor holds a CPU
        self.stream = StreamEpochs(iter_train_batches(self.train_shard, cfg.optim.batch_size // world),
                                   self.num_train // cfg.optim.batch_size)

    @torch.no_grad()
    def _embed_static(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W, 3) uint8 -> (B, K, d): each frame tiled over a clip (a static clip)."""
        b, k = frames.shape[:2]
        x = eval_transform(frames.reshape(b * k, 1, *frames.shape[2:]), self.size)
        x = x.expand(-1, self.cfg.data.clip_len, -1, -1, -1)
        return self.backbone(x.to(self.device)).reshape(b, k, -1).cpu()

    @torch.no_grad()
    def _embed_clips(self, clips: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, d); train augmentation when ``gen`` is given, else eval crop."""
        x = train_transform(clips, self.size, generator=gen) if gen is not None else eval_transform(clips, self.size)
        return self.backbone(x.to(self.device)).cpu()

    def batches(self, epoch: int):
        # Augmentation draws are a function of (seed, epoch, rank); the clips themselves of the pipeline's
        # (seed, video, epoch). Every rank takes the same number of steps (StreamEpochs), so collective ops
        # stay in step, also when the stream runs dry.
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.cfg.seed, epoch, self.rank]).integers(2**62)))
        for b in self.stream.epoch(epoch):
            yield self._batch(b, gen)
        if self.stream.dry and self.stream.dry[0] == epoch and self.rank == 0:
            say(f"[splavu] online train stream ran dry in epoch {epoch + 1}, after step {self.stream.dry[1]} of "
                f"{self.stream.steps}: the decodable videos fill fewer batches than epochs x steps (rejected "
                "videos are listed in rejects.jsonl); the remaining steps are skipped")

    def _batch(self, b: dict[str, Any], gen: torch.Generator) -> Batch:
        """One training batch of decoded rows (a pixel anonymizer's source adds the frames)."""
        clips = self._embed_clips(b["clips"], gen).unsqueeze(1)  # one clip per video: L = 1
        return Batch(clips, self._embed_static(b["static"]), b["action_id"].long())

    def epoch_metrics(self) -> dict[str, float]:
        """Steps taken this epoch, and the fraction of its rows the stream drew for another epoch."""
        s = self.stream
        return {"stream_steps": float(s.taken), "stream_other_epoch": s.other_epoch / s.rows if s.rows else 0.0}

    def validation(self):
        # Validation clips are deterministic (eval sampling): every rank embeds all of them, once.
        if self._val is None:
            clips, static, action = [], [], []
            for b in self.val_shard.iter_torch_batches(batch_size=16, drop_last=False):
                c = b["clips"]  # (B, C, T, H, W, 3)
                clips.append(self._embed_clips(c.reshape(-1, *c.shape[2:])).reshape(c.shape[0], c.shape[1], -1))
                static.append(self._embed_static(b["static"]))
                action.append(b["action_id"].long())
            if not clips:
                raise ValueError("online mode: no validation video could be decoded (see rejects.jsonl)")
            self._val = (torch.cat(clips), torch.cat(static), torch.cat(action))
        return self._val


def say(message: str) -> None:
    """One console line from a training worker. Ray Train V2 patches print() in its workers to log AND,
    since Ray wraps the worker's stdout, to print too, so every line reached the driver twice; the
    process's own stdout is what Ray forwards (once) to the driver's console and the worker's log file."""
    print(message, file=sys.__stdout__, flush=True)
