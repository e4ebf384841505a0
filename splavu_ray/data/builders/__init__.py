"""Builders: standard on-disk dataset layouts -> Parquet manifests (splavu_ray.data.manifest).

``build("ucf101", "/data/UCF101", "ucf101_s1.parquet", split=1)`` or, from a shell,
``python -m splavu_ray.data.builders ucf101 /data/UCF101 ucf101_s1.parquet --split 1``.
Layouts and commands for every dataset: docs/datasets.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

# action datasets, the video privacy benchmarks (pa_/vp_*), natural bias (Toyota Smarthome), gait re-id (CASIA-B)
from . import (
    casia_b,
    hmdb51,
    kinetics400,
    ntu60,
    pa_hmdb51,
    thumos14,
    toyota_smarthome,
    ucf101,
    ucf_crime,
    vispr,
    vp_hmdb51,
    vp_ucf101,
)
from ._common import BuilderError, BuiltManifest

__all__ = ["BUILDERS", "BuilderError", "BuiltManifest", "build", "options"]

BUILDERS: dict[str, Callable[..., BuiltManifest]] = {
    m.NAME: m.build for m in (ucf101, hmdb51, kinetics400, vispr, thumos14, ucf_crime, ntu60)
}
BUILDERS.update({m.NAME: m.build for m in (pa_hmdb51, vp_hmdb51, vp_ucf101)})
BUILDERS.update({m.NAME: m.build for m in (toyota_smarthome, casia_b)})


def options(name: str) -> dict[str, Any]:
    """The keyword options a builder accepts, with their defaults."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def build(name: str, root: str, out_path: str, **kw: Any) -> BuiltManifest:
    """Build dataset ``name`` from ``root`` into the manifest ``out_path``; ``kw``: see :func:`options`."""
    unknown = sorted(set(kw) - set(options(name)))
    if unknown:
        raise BuilderError(f"{name}: unknown option(s) {unknown}; it accepts {sorted(options(name))}")
    return _builder(name)(root, out_path, **kw)


def _builder(name: str) -> Callable[..., BuiltManifest]:
    if name not in BUILDERS:
        raise BuilderError(f"unknown dataset {name!r}; builders exist for {sorted(BUILDERS)}")
    return BUILDERS[name]
