"""A run's output folder: every path a run writes or reads back, named in one place.

    output_dir/
      config.yaml          the resolved config           deepspeed.json  the generated DeepSpeed config
      adapter/             f_A of the last epoch          best_adapter/   f_A the selection rule kept
      results.json         every task's numbers           results.md      the results table
      report.html          the page to look at            *.png           plots beside the results
      rejects.jsonl        videos online training dropped   tensorboard/  per-epoch event files (tracking.tensorboard)
      ray/RUN_NAME/        Ray Train checkpoints (``ray.storage_path`` moves them, e.g. to s3://)

A sweep's folder holds its own files (study, trials.csv, pareto.csv, summary.json, pareto.png, report.html,
pareto_adapters/, tune/) and one run folder per trial under ``trials/TRIAL_ID``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BEST_ADAPTER = "best_adapter"
LATEST_ADAPTER = "adapter"


@dataclass(frozen=True)
class RunFolder:
    root: Path
    storage: str | None = None  # ray.storage_path; None = root/ray

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, cfg) -> "RunFolder":
        """The folder of a Config (``output_dir``, ``ray.storage_path``)."""
        return cls(cfg.output_path, cfg.ray.storage_path)

    def make(self) -> "RunFolder":
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    # -- what a run writes ---------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def deepspeed_config(self) -> Path:
        return self.root / "deepspeed.json"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def results_table(self) -> Path:
        return self.root / "results.md"

    @property
    def report(self) -> Path:
        """report.html: the self-contained page of a run (table, plots, training curves) or of a sweep."""
        return self.root / "report.html"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects.jsonl"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files of the per-epoch metrics (``tracking.tensorboard``)."""
        return self.root / "tensorboard"

    def adapter(self, name: str = BEST_ADAPTER) -> Path:
        """An exported adapter: ``best_adapter`` (what the selection rule kept) or ``adapter`` (the last epoch)."""
        return self.root / name

    @property
    def checkpoints(self) -> str:
        """Ray Train's storage for this run's checkpoints (a local folder made absolute, or a URI)."""
        storage = self.storage or str(self.root / "ray")
        return storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))

    def run_checkpoints(self, run_name: str) -> str:
        """Where Ray Train keeps the checkpoints of ``run_name``."""
        return f"{self.checkpoints.rstrip('/')}/{run_name}"

    # -- sweeps ----------------------------------------------------------------------------------------
    def trial(self, trial_id: str) -> "RunFolder":
        """The run folder of one sweep trial (its checkpoints inside it)."""
        root = self.root / "trials" / trial_id
        return RunFolder(root, str(root / "ray"))

    @property
    def trial_record(self) -> Path:
        """A sweep trial's record: its parameters, folder, privacy metric used and raw-feature point."""
        return self.root / "record.json"

    def trial_records(self) -> list[Path]:
        """The records of every trial a sweep folder holds, in no particular order."""
        return sorted((self.root / "trials").glob("*/record.json"))

    def sweep_file(self, name: str) -> Path:
        """sweep.yaml, base_config.yaml, trials.csv, pareto.csv, summary.json, pareto.png, optuna.db."""
        return self.root / name

    @property
    def pareto_adapters(self) -> Path:
        return self.root / "pareto_adapters"

    @property
    def tune(self) -> Path:
        return self.root / "tune"
