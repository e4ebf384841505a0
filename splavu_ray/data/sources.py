"""Which manifests a run uses: the built-in synthetic data or the user's own manifests."""

from __future__ import annotations

import os

from ..config import Config


def resolve_manifests(cfg: Config) -> dict[str, str]:
    """{"main": action manifest, "privacy": privacy manifest}; generates the built-in data once."""
    d = cfg.data
    if d.dataset == "synthetic":
        from .synthetic import ensure_synthetic

        path = str(ensure_synthetic(d.synthetic, os.path.expanduser(d.cache_dir)))
        return {"main": path, "privacy": d.privacy_manifest or path}
    if not d.privacy_manifest:
        from ..config import ConfigError

        raise ConfigError("config key 'data.privacy_manifest' must name a privacy manifest (e.g. VISPR) "
                          "when data.dataset is not 'synthetic'")
    return {"main": d.dataset, "privacy": d.privacy_manifest}
