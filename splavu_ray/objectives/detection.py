"""Temporal action detection loss (TriDet / ActionFormer style) on a ``TADHead``'s pyramid outputs.

Centre sampling + per-level regression ranges assign each pyramid point at most one ground-truth segment
(the shortest that qualifies); classification is a sigmoid focal loss over all valid points and boundary
regression a 1-D DIoU loss on the positives, both normalised by the number of positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def regression_ranges(levels: int, base: float = 4.0) -> list[tuple[float, float]]:
    """Level l regresses segments whose farther boundary is in [lo_l, hi_l) windows from the point."""
    edges = [0.0] + [base * 2 ** i for i in range(levels - 1)] + [float("inf")]
    return list(zip(edges[:-1], edges[1:]))


def tad_targets(segments: torch.Tensor, labels: torch.Tensor, lengths: list[int], strides: list[int],
                num_classes: int, centre_radius: float = 1.5):
    """Assign ground truth to pyramid points.

    segments (B, S, 2) in windows, labels (B, S) (-1 = padding); lengths[l] points at level l.
    Returns per level: cls targets (B, L_l, C) one-hot, reg targets (B, L_l, 2) in strides, positive mask.
    """
    ranges = regression_ranges(len(strides))
    cls_t, reg_t, pos_t = [], [], []
    valid = labels >= 0  # (B, S)
    seg_len = (segments[..., 1] - segments[..., 0]).clamp_min(1e-6)
    for n, stride, (lo, hi) in zip(lengths, strides, ranges):
        t = (torch.arange(n, device=segments.device, dtype=segments.dtype) + 0.5) * stride  # point centres
        left = t[None, :, None] - segments[:, None, :, 0]  # (B, L, S)
        right = segments[:, None, :, 1] - t[None, :, None]
        centre = segments.mean(-1)[:, None, :]
        radius = centre_radius * stride
        inside_centre = ((t[None, :, None] >= torch.maximum(segments[:, None, :, 0], centre - radius)) &
                         (t[None, :, None] <= torch.minimum(segments[:, None, :, 1], centre + radius)))
        far = torch.maximum(left, right)
        ok = inside_centre & (left > 0) & (right > 0) & (far >= lo) & (far < hi) & valid[:, None, :]
        cost = torch.where(ok, seg_len[:, None, :].expand_as(ok), torch.full_like(left, float("inf")))
        best_cost, best = cost.min(-1)  # the shortest qualifying segment
        pos = torch.isfinite(best_cost)
        lab = labels.gather(1, best).clamp_min(0)
        cls = F.one_hot(lab, num_classes).to(segments.dtype) * pos.unsqueeze(-1)
        reg = torch.stack([left.gather(2, best[..., None])[..., 0], right.gather(2, best[..., None])[..., 0]], -1)
        cls_t.append(cls), reg_t.append(reg / stride * pos.unsqueeze(-1)), pos_t.append(pos)
    return cls_t, reg_t, pos_t


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al.), unreduced."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - DIoU of segments given as (distance to start, distance to end) from the same point; (N, 2) -> (N,)."""
    pl, pr = pred[:, 0], pred[:, 1]
    tl, tr = target[:, 0], target[:, 1]
    inter = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    union = (pl + pr) + (tl + tr) - inter
    iou = inter / union.clamp_min(1e-6)
    enclose = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    centre_gap = 0.5 * ((pr - pl) - (tr - tl))
    return 1 - iou + (centre_gap / enclose.clamp_min(1e-6)) ** 2


def tad_loss(out, segments: torch.Tensor, labels: torch.Tensor, centre_radius: float = 1.5) -> dict[str, torch.Tensor]:
    """``out``: a TADOutput (per-level cls, reg, masks, strides). Focal classification over all valid points + DIoU regression on positives, both / #positives."""
    lengths = [c.shape[1] for c in out.cls]
    num_classes = out.cls[0].shape[-1]
    cls_t, reg_t, pos_t = tad_targets(segments.float(), labels, lengths, out.strides, num_classes, centre_radius)
    # Zero-valued anchors keep both branches in the graph when a batch has no positive (ZeRO hooks).
    cls_l = sum(c.sum() for c in out.cls) * 0.0
    reg_l = sum(r.sum() for r in out.reg) * 0.0
    n_pos = 0
    for c, r, m, ct, rt, pt in zip(out.cls, out.reg, out.masks, cls_t, reg_t, pos_t):
        cls_l = cls_l + (sigmoid_focal_loss(c.float(), ct).sum(-1) * m).sum()
        pt = pt & m
        if pt.any():
            reg_l = reg_l + diou_loss_1d(r.float()[pt], rt[pt]).sum()
        n_pos += int(pt.sum())
    norm = max(1, n_pos)
    cls_l, reg_l = cls_l / norm, reg_l / norm
    return {"loss": cls_l + reg_l, "cls": cls_l.detach(), "reg": reg_l.detach(), "positives": n_pos}
