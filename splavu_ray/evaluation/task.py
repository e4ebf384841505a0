"""What an evaluation task is, and what every task shares.

A task is a plug-in with one small interface (:class:`EvalTask`):

- ``name``: its section of results.json and its key in ``eval.tasks``;
- ``optional``: run by default only when the data has its labels (skipped, with the reason recorded,
  otherwise); a task named in ``eval.tasks`` or given its own manifest must run;
- ``manifest(cfg, manifests)``: which manifest its features come from, ``own_manifest(cfg)`` the one
  configured for this task only (``eval.<task>.manifest``);
- ``check(cfg, path)``: the label check, cheap, before any feature extraction or training
  (raises :class:`EvalInputError` naming the problem);
- ``run(cfg, adapter, store)``: raw vs anonymized, its results.json section;
- ``columns``: its columns of the results table (splavu_ray.evaluation.report).

Every task compares the same two views of the features: ``raw`` (f_E's) and ``anonymized`` (f_A's output).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ClassVar

import numpy as np
import torch

from .. import probes
from ..config import Config
from ..data.feature_store import FeatureSplit, FeatureStore
from ..data.manifest import Manifest, ManifestError, read_manifest
from ..models.adapter import AnonymizingAdapter
from . import reuse
from .report import TableColumn


class EvalInputError(ValueError):
    """An input of the evaluation (adapter, manifest labels, feature width) is unusable."""


class EvalTask:
    """Base class of the evaluation tasks (see the module docstring)."""

    name: ClassVar[str]
    optional: ClassVar[bool] = True
    columns: ClassVar[tuple[TableColumn, ...]] = ()

    def manifest(self, cfg: Config, manifests: dict[str, str]) -> str:
        """The manifest whose features the task reads (default: the main dataset)."""
        return self.own_manifest(cfg) or manifests["main"]

    def own_manifest(self, cfg: Config) -> str | None:
        return None

    def default_on(self, cfg: Config) -> bool:
        """Whether the task is planned when ``eval.tasks`` is unset (an expensive attack may be opt-in)."""
        return True

    def check(self, cfg: Config, path: str) -> None:
        raise NotImplementedError

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# Shared by the tasks
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def anonymize(adapter: AnonymizingAdapter, feats: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Apply f_A to (N, d) or (N, L, d) features."""
    adapter.eval()
    out = [adapter(torch.tensor(feats[i:i + batch], dtype=torch.float32)).numpy() for i in range(0, len(feats), batch)]
    return np.concatenate(out) if out else feats


def views(adapter: AnonymizingAdapter) -> tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...]:
    """("raw", identity), ("anonymized", f_A) on (N, d) / (N, L, d) arrays."""
    return ("raw", lambda x: x), ("anonymized", lambda x: anonymize(adapter, x))


def sequence_views(adapter: AnonymizingAdapter) -> tuple[tuple[str, Callable[[np.ndarray], np.ndarray] | None], ...]:
    """The two views on ONE untrimmed video's (L, d) window sequence (f_A attends across it)."""
    return ("raw", None), ("anonymized", lambda x: anonymize(adapter, x[None])[0])


def standardize(train: list[np.ndarray], test: list[np.ndarray]):
    """Per-feature standardisation with the training videos' statistics (the same for raw and anonymized)."""
    flat = np.concatenate(train)
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    return [(x - mu) / sd for x in train], [(x - mu) / sd for x in test]


def fit_kw(cfg: Config) -> dict:
    """Mini-batch and device of every probe and attacker (``eval.batch_size``, ``eval.device``)."""
    device = cfg.eval.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"batch_size": cfg.eval.batch_size, "device": device}


def probe_scores(cfg: Config, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 num_classes: int) -> np.ndarray:
    """The configured linear action probe (eval.action) on (N, L, d) clip features: (M, num_classes)."""
    a = cfg.eval.action
    # The same inputs give the same scores (every sweep trial's raw view): reused within the process.
    key = reuse.content_key("action_scores", train_x, train_y, test_x, num_classes, a.model_dump(), cfg.seed,
                            fit_kw(cfg), torch.get_num_threads())
    return reuse.reused(key, lambda: probes.action_scores(
        train_x, train_y, test_x, num_classes, a.probe_epochs, a.probe_lr, cfg.seed, **fit_kw(cfg), kind=a.probe,
        c=a.probe_c, c_grid=a.probe_c_grid))


def split_rows(path: str, split: str) -> tuple[Manifest, list[dict]]:
    """A manifest and the rows of one of its splits; an unreadable manifest is an EvalInputError."""
    try:
        man = read_manifest(path)
    except ManifestError as exc:
        raise EvalInputError(str(exc)) from None
    return man, man.split(split).rows()


def check_width(adapter: AnonymizingAdapter, width: int | None, what: str) -> None:
    if width is not None and adapter.dim != width:
        raise EvalInputError(f"adapter width {adapter.dim} does not match the feature width {width} of {what}: "
                             "the adapter was trained on another backbone")


def check_split_width(adapter: AnonymizingAdapter, *splits: FeatureSplit) -> None:
    for split in splits:
        if split is not None and split.dim and split.dim != adapter.dim:
            raise EvalInputError(f"adapter width {adapter.dim} does not match feature width {split.dim}: the adapter "
                                 "was trained on another backbone")


@contextmanager
def cpu_threads(n: int | None):
    """torch's threads and the BLAS pools scikit-learn's probe runs on (threadpoolctl), both at n."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
