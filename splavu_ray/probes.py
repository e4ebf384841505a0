"""Probes trained on frozen (raw or anonymized) features: privacy attackers and the action probe.

Plain PyTorch and scikit-learn on in-memory arrays; metrics from splavu_ray.metrics (scikit-learn).

Attackers (docs/method.md, "Privacy leakage"): the paper's MLP, a linear one, and a *bank*: several heads
with different learning rates and weight decays trained together in one pass over the features (the
multi-head probe trick of V-JEPA's evals: one data loop, one forward of the shared input, each head
with its own optimizer and schedule, so each head learns exactly as if it were trained alone).

Action probe: by default an L2 logistic regression solved to convergence with its C cross-validated
on the training videos. A fixed-epoch AdamW probe on a few hundred test videos moved top-1 by up to 5
points between seeds for one and the same adapter (docs/benchmarks.md, "Method proof"), which hides a
2-point utility bound; the converged probe gives one answer per feature set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from .metrics import classification as metrics
from .progress import Progress

AttackerKind = Literal["mlp", "linear"]


def _standardize(train: np.ndarray, *others: np.ndarray):
    # z-score with train statistics: same treatment for raw and anonymized features, and a
    # stronger (fairer) attack than raw scales would give.
    flat = train.reshape(-1, train.shape[-1])
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    return [(a - mu) / sd for a in (train, *others)]


def fit_heads(heads: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, epochs: int,
              lrs: Sequence[float], weight_decays: Sequence[float], seed: int, batch_size: int = 64,
              device: str = "cpu", desc: str = "probe") -> list[nn.Module]:
    """Train every head on the same mini-batches (one pass over the data per epoch).

    Each head has its own AdamW and reduce-on-plateau schedule (x1/5, the paper's attacker) driven by
    its own epoch loss; their losses are summed for one backward, and since the heads share no
    parameters each head's gradient is what it would be alone.
    """
    if not (len(heads) == len(lrs) == len(weight_decays)):
        raise ValueError(f"{len(heads)} heads need as many lrs and weight decays, got {len(lrs)} and {len(weight_decays)}")
    gen = torch.Generator().manual_seed(seed)
    heads = [h.to(device) for h in heads]
    x, y = x.to(device), y.to(device)
    opts = [torch.optim.AdamW(h.parameters(), lr=lr, weight_decay=wd) for h, lr, wd in zip(heads, lrs, weight_decays)]
    scheds = [torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.2, patience=10) for o in opts]
    for h in heads:
        h.train()
    bar = Progress(epochs, desc, unit="epoch", delay=5.0)  # shown only when training is slow (large data)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        totals = [0.0] * len(heads)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size].to(device)
            xb, yb = x[idx], y[idx]
            losses = [loss_fn(h(xb), yb) for h in heads]
            for o in opts:
                o.zero_grad(set_to_none=True)
            torch.stack(losses).sum().backward()
            for k, (o, loss) in enumerate(zip(opts, losses)):
                o.step()
                totals[k] += loss.item() * len(idx)
        for s, total in zip(scheds, totals):
            s.step(total / len(x))
        bar.update(1)
    bar.close()
    return [h.eval().cpu() for h in heads]


def mlp_attacker(dim: int, n_out: int, hidden: int | None = None) -> nn.Module:
    """The paper's attacker: Linear(d, d) - ReLU - Linear(d, n_attributes)."""
    hidden = hidden or dim
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def make_attacker(kind: AttackerKind, dim: int, n_out: int, hidden: int | None = None) -> nn.Module:
    if kind == "mlp":
        return mlp_attacker(dim, n_out, hidden)
    if kind == "linear":
        return nn.Linear(dim, n_out)
    raise ValueError(f"attacker kind must be 'mlp' or 'linear', got {kind!r}")


@dataclass
class AttackResult:
    cmap: float
    macro_f1: float
    per_attribute: dict[str, float]
    probs: np.ndarray | None = field(default=None, repr=False)  # (test, attributes): what the bootstrap resamples

    def as_dict(self) -> dict:
        return {"cmap": self.cmap, "macro_f1": self.macro_f1, "per_attribute": self.per_attribute}


def _check_attack_inputs(train_x, train_y, test_x, test_y, names) -> None:
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"attacker features must be (N, d) with equal d, got {train_x.shape} and {test_x.shape}")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(f"features and labels differ in length: {len(train_x)}/{len(train_y)}, {len(test_x)}/{len(test_y)}")
    if train_y.shape[1] != len(names) or test_y.shape[1] != len(names):
        raise ValueError(f"{len(names)} attribute names for label matrices of {train_y.shape[1]} and {test_y.shape[1]} columns")


def _score(head: nn.Module, xte: torch.Tensor, test_y: np.ndarray, names: Sequence[str]) -> AttackResult:
    with torch.no_grad():
        probs = torch.sigmoid(head(xte)).numpy()
    return AttackResult(metrics.cmap(probs, test_y), metrics.macro_f1(probs, test_y),
                        metrics.per_attribute_ap(probs, test_y, names), probs)


def attack(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
           names: list[str], kind: AttackerKind = "mlp", epochs: int = 100, lr: float = 1e-3,
           weight_decay: float = 0.0, hidden: int | None = None, seed: int = 0, batch_size: int = 64,
           device: str = "cpu") -> AttackResult:
    """Train a privacy attacker WITH labels on (N, d) features; score it on the test split."""
    return attack_bank(train_x, train_y, test_x, test_y, names, [lr], [weight_decay], kind, epochs, hidden,
                       seed, batch_size, device)[_bank_name(lr, weight_decay)]


def _bank_name(lr: float, wd: float) -> str:
    return f"lr{lr:g}_wd{wd:g}"


def attack_bank(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                names: list[str], lrs: Sequence[float], weight_decays: Sequence[float],
                kind: AttackerKind = "mlp", epochs: int = 100, hidden: int | None = None,
                seed: int = 0, batch_size: int = 64, device: str = "cpu") -> dict[str, AttackResult]:
    """One attacker per (lr, weight decay) pair, all trained in one pass; {"lr0.001_wd0": result}."""
    return attack_groups(train_x, train_y, test_x, test_y, names, [(kind, lrs, weight_decays)], epochs, hidden,
                         seed, batch_size, device)[0]


def attack_groups(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  names: list[str], groups: Sequence[tuple[AttackerKind, Sequence[float], Sequence[float]]],
                  epochs: int = 100, hidden: int | None = None, seed: int = 0, batch_size: int = 64,
                  device: str = "cpu") -> list[dict[str, AttackResult]]:
    """Several attacker banks ``(kind, lrs, weight_decays)`` in ONE pass over the data: one result dict per group,
    each equal to that group's own :func:`attack_bank` call. The features are standardised once; every group's
    heads start from the weights they would get alone (torch seeded with ``seed`` before each group), all heads
    see the same mini-batches (as every call alone does: the order is seeded with ``seed``) and each keeps its
    own optimizer and schedule."""
    _check_attack_inputs(train_x, train_y, test_x, test_y, names)
    for _, lrs, weight_decays in groups:
        if len(lrs) != len(weight_decays):
            raise ValueError(f"lrs and weight_decays pair up: {len(lrs)} vs {len(weight_decays)}")
    xtr, xte = _standardize(train_x.astype(np.float32), test_x.astype(np.float32))
    dim, n_out = xtr.shape[1], train_y.shape[1]
    heads: list[list[nn.Module]] = []
    for kind, lrs, _ in groups:
        torch.manual_seed(seed)
        heads.append([make_attacker(kind, dim, n_out, hidden) for _ in lrs])
    every = [h for group in heads for h in group]
    fit_heads(every, torch.from_numpy(xtr), torch.from_numpy(train_y.astype(np.float32)), nn.BCEWithLogitsLoss(),
              epochs, [lr for _, lrs, _ in groups for lr in lrs], [wd for _, _, wds in groups for wd in wds], seed,
              batch_size, device, desc=f"{'+'.join(g[0] for g in groups)} attackers x{len(every)}")
    xte_t = torch.from_numpy(xte)
    return [{_bank_name(lr, wd): _score(h, xte_t, test_y, names) for h, lr, wd in zip(trained, lrs, wds)}
            for trained, (_, lrs, wds) in zip(heads, groups)]


def grid(lrs: Sequence[float], weight_decays: Sequence[float]) -> tuple[list[float], list[float]]:
    """Every (lr, weight decay) combination as two parallel lists."""
    pairs = [(lr, wd) for lr in lrs for wd in weight_decays]
    return [p[0] for p in pairs], [p[1] for p in pairs]


ProbeKind = Literal["logreg", "sgd"]
DEFAULT_C_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def _per_video(probs: np.ndarray, n: int, length: int, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Clip probabilities over the classes seen in training (n * length, k) -> each video's softmax
    averaged over its clips, in all num_classes columns (unseen classes get 0): (n, num_classes)."""
    out = np.zeros((n, num_classes), dtype=np.float64)
    out[:, classes] = probs.reshape(n, length, -1).mean(axis=1)
    return out


def _logreg(c: float):
    from sklearn.linear_model import LogisticRegression

    # lbfgs to sklearn's default tolerance: the solution is unique (strictly convex), so the score does
    # not depend on a seed; warm_start lets a C path reuse the previous solution.
    return LogisticRegression(C=c, max_iter=2000, warm_start=True)


def _logreg_scores(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, num_classes: int, c: float,
                   model=None) -> np.ndarray:
    """L2 multinomial logistic regression on every clip, solved to convergence (the probe is a convex
    problem, so its score depends on the features only, not on a seed or an epoch budget). ``model``:
    a previous fit on the same data to warm-start from."""
    n, length, dim = xtr.shape
    y = np.repeat(ytr, length)
    classes = np.unique(y)
    if len(classes) == 1:  # nothing to learn: every clip says that class
        return _per_video(np.ones((len(xte) * xte.shape[1], 1)), len(xte), xte.shape[1], classes, num_classes)
    model = model if model is not None else _logreg(c)
    model.set_params(C=c)
    model.fit(xtr.reshape(n * length, dim), y)
    probs = model.predict_proba(xte.reshape(-1, dim))
    return _per_video(probs, len(xte), xte.shape[1], model.classes_, num_classes)


def choose_c(xtr: np.ndarray, ytr: np.ndarray, num_classes: int, grid: Sequence[float] = DEFAULT_C_GRID,
             folds: int = 3) -> float:
    """The inverse L2 strength of the logistic probe, by k-fold cross-validation over training VIDEOS
    (all clips of a video fall in one fold, so no clip is scored by a probe that saw its neighbours);
    score = video top-1 with clip softmax averaged, as the evaluation itself. Ties go to the smaller C
    (the stronger regularisation). Too few videos per class for the folds: the grid's middle value."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(ytr, minlength=num_classes)
    grid = sorted(grid)
    if len(grid) == 1 or counts[counts > 0].min() < folds:
        return float(grid[len(grid) // 2])
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    hits = dict.fromkeys(grid, 0)
    for tr, va in split.split(np.zeros(len(ytr)), ytr):
        model = _logreg(grid[0])  # one path per fold, from strong to weak regularisation
        for c in grid:
            probs = _logreg_scores(xtr[tr], ytr[tr], xtr[va], num_classes, c, model)
            hits[c] += int((probs.argmax(1) == ytr[va]).sum())
    best = max(hits.values())
    return float(min(c for c, v in hits.items() if v == best))


def action_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int,
                  epochs: int = 100, lr: float = 1e-3, seed: int = 0, batch_size: int = 64,
                  device: str = "cpu", kind: ProbeKind = "logreg", c: float | None = None,
                  c_grid: Sequence[float] = DEFAULT_C_GRID) -> np.ndarray:
    """Linear probe on clip features (N, L, d), trained on every clip; returns each test video's
    class probabilities, softmax averaged over its L clips: (M, num_classes).

    kind "logreg" (default): L2 logistic regression solved to convergence, deterministic; ``c`` its
    inverse regularisation, None = chosen from ``c_grid`` by cross-validation over training videos
    (:func:`choose_c`), separately for every feature set it is given. ``epochs``, ``lr``, ``seed``,
    ``batch_size`` and ``device`` apply to kind "sgd" only: a torch Linear trained with AdamW for a
    fixed number of epochs (the paper's style of probe; its score moves with the seed)."""
    if train_x.ndim != 3 or test_x.ndim != 3 or train_x.shape[2] != test_x.shape[2]:
        raise ValueError(f"probe features must be (N, L, d) with equal d, got {train_x.shape} and {test_x.shape}")
    if len(train_y) != len(train_x):
        raise ValueError(f"{len(train_x)} training videos but {len(train_y)} labels")
    if kind not in ("logreg", "sgd"):
        raise ValueError(f"probe kind must be 'logreg' or 'sgd', got {kind!r}")
    if c is not None and c <= 0:
        raise ValueError(f"the probe's C must be > 0, got {c}")
    if len(train_y) == 0:
        raise ValueError("the action probe needs at least one training video")
    if train_y.min() < 0 or train_y.max() >= num_classes:
        raise ValueError(f"action labels must lie in [0, {num_classes}); got {train_y.min()}..{train_y.max()} "
                         "(-1 means an unlabelled row)")
    xtr, xte = _standardize(train_x.astype(np.float32), test_x.astype(np.float32))
    if kind == "logreg":
        ytr = train_y.astype(np.int64)
        xtr64, xte64 = xtr.astype(np.float64), xte.astype(np.float64)
        c = choose_c(xtr64, ytr, num_classes, c_grid) if c is None else c
        return _logreg_scores(xtr64, ytr, xte64, num_classes, c)
    torch.manual_seed(seed)
    n, length, dim = xtr.shape
    clips = torch.from_numpy(xtr.reshape(n * length, dim))
    labels = torch.from_numpy(np.repeat(train_y.astype(np.int64), length))
    (model,) = fit_heads([nn.Linear(dim, num_classes)], clips, labels, nn.CrossEntropyLoss(), epochs, [lr], [1e-4], seed,
                          batch_size, device)
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(xte)), dim=-1).mean(dim=1).numpy()


def action_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, epochs: int = 100, lr: float = 1e-3, seed: int = 0, batch_size: int = 64,
                 device: str = "cpu", kind: ProbeKind = "logreg", c: float | None = None,
                 c_grid: Sequence[float] = DEFAULT_C_GRID) -> float:
    """Top-1 (percent) of the linear probe, with the softmax averaged over each test video's clips."""
    return metrics.top1(action_scores(train_x, train_y, test_x, num_classes, epochs, lr, seed, batch_size, device,
                                      kind, c, c_grid), test_y)
