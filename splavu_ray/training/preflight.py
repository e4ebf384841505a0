"""Checks a run passes before any work starts: inputs that can be checked cheaply, and safe resumes.

A bad manifest path, an impossible mode combination or an unreachable backbone fails in a second, not
after minutes of feature extraction; a rerun whose config changed what its checkpoints depend on is
refused instead of silently continuing the old run.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config, ConfigError, load_config
from ..models.backbone import BackboneError, check_local_weights, resolve_source
from ..run_folder import RunFolder

# Sections whose change makes a checkpoint of the same run meaningless to resume from.
RESUME_KEYS = ("seed", "data", "backbone", "adapter", "loss", "optim", "deepspeed", "train.mode", "train.select",
               "scaling.num_workers", "eval.tad", "eval.anomaly")


def check_inputs(cfg: Config) -> None:
    """Fail before any work on inputs we can check cheaply."""
    d = cfg.data
    for key, value in (("data.dataset", d.dataset if d.dataset != "synthetic" else None),
                       ("data.privacy_manifest", d.privacy_manifest)):
        if value and "://" not in value and not os.path.isfile(os.path.expanduser(value)):
            raise ConfigError(f"config key '{key}': manifest {value!r} does not exist")
    if cfg.train.mode == "online" and (cfg.loss.w_tad > 0 or cfg.loss.w_ad > 0):
        # Online mode streams trimmed clips only; co-training reads untrimmed sequences from the store.
        raise ConfigError("config key 'train.mode': 'online' trains on trimmed clips only; loss.w_tad / "
                          "loss.w_ad co-training needs train.mode=cached")
    try:
        resolve_source(cfg.backbone.source, fetch=False)  # a remote folder is copied where the model is built
        check_local_weights(cfg.backbone.kind, cfg.backbone.source)  # i3d / vjepa1: converted weights exist
    except BackboneError as exc:
        raise ConfigError(f"config key 'backbone.source': {exc}") from None


def _pick(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return d


def check_resume(cfg: Config) -> None:
    """Same run_name + output_dir resumes; refuse (before any work) when the earlier run's resolved
    config differs in what its checkpoints depend on, instead of silently continuing the old run."""
    folder = RunFolder.of(cfg)
    storage = folder.checkpoints
    if not folder.config.is_file() or "://" in storage or not Path(folder.run_checkpoints(cfg.run_name)).is_dir():
        return
    try:
        old = load_config(folder.config).to_dict()
    except ConfigError:
        return  # written by another version: nothing reliable to compare
    new = cfg.to_dict()
    changed = [k for k in RESUME_KEYS if _pick(old, k) != _pick(new, k)]
    if changed:
        raise ConfigError(f"run '{cfg.run_name}' in {cfg.output_path} already has checkpoints made with a different "
                          f"config ({', '.join(changed)} changed; see {folder.config}); running again resumes it, so pick "
                          "a new run_name/output_dir, or delete that folder to start over")
