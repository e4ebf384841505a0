"""Which manifests a run uses: the built-in synthetic data or the user's own manifests."""

from __future__ import annotations

import os

from ..config import Config
from ..run_folder import is_remote


def resolve_manifests(cfg: Config) -> dict[str, str]:
    """{"main": action manifest, "privacy": privacy manifest}; generates the built-in data once."""
    d = cfg.data
    if d.dataset == "synthetic":
        from .synthetic import ensure_synthetic

        if is_remote(d.cache_dir):  # every node reads the videos from the bucket (data.remote_synthetic)
            from .remote_synthetic import ensure_remote_synthetic

            path = ensure_remote_synthetic(d.synthetic, d.cache_dir)
        else:
            path = str(ensure_synthetic(d.synthetic, os.path.expanduser(d.cache_dir)))
        return {"main": path, "privacy": d.privacy_manifest or path}
    if not d.privacy_manifest:
        from ..config import ConfigError

        raise ConfigError("config key 'data.privacy_manifest' must name a privacy manifest (e.g. VISPR) "
                          "when data.dataset is not 'synthetic'")
    return {"main": d.dataset, "privacy": d.privacy_manifest}
