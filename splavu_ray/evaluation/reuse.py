"""Results an evaluation computes again from the same inputs, kept in the process for its next run.

Every sweep trial scores the RAW features as well as its own anonymized ones (raw is the reference of
every anonymized number), with the same attackers, probes and seeds: the same inputs, hence the same
results, trial after trial. A process that evaluates several runs (a Ray worker that takes one trial's
evaluation after another, ``python -m splavu_ray.evaluate`` over baselines) keeps such results here and
hands them back instead of training the same attackers and probes again.

A result is keyed by its content: the bytes, dtype and shape of every input array, the settings that
shape the computation (config sections, seed, mini-batch, device) and torch's thread count, so a hit
returns exactly what computing it would. The memory is bounded (:data:`MAX_ENTRIES`, least recently used
out) and each hit is a deep copy (a caller may modify what it gets).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")
MAX_ENTRIES = 16

_results: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()
_counts = {"hits": 0, "misses": 0}


def content_key(*parts: Any) -> str:
    """A digest of ``parts``: numpy arrays by dtype, shape and bytes; everything else by its JSON form."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray):
            a = np.ascontiguousarray(part)
            h.update(f"ndarray {a.dtype.str} {a.shape}".encode())
            h.update(a.tobytes() if a.dtype == object else memoryview(a).cast("B"))
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def reused(key: str, compute: Callable[[], T]) -> T:
    """``compute()``, or (a copy of) what it returned before under ``key`` in this process."""
    with _lock:
        if key in _results:
            _results.move_to_end(key)
            _counts["hits"] += 1
            return copy.deepcopy(_results[key])
        _counts["misses"] += 1
    value = compute()
    with _lock:
        _results[key] = copy.deepcopy(value)
        while len(_results) > MAX_ENTRIES:
            _results.popitem(last=False)
    return value


def counts() -> dict[str, int]:
    """Hits and misses so far in this process."""
    with _lock:
        return dict(_counts)


def clear() -> None:
    """Forget every kept result (and the counts)."""
    with _lock:
        _results.clear()
        _counts.update(hits=0, misses=0)
