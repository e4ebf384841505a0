"""A run's output folder: every path a run writes or reads back, named in one place.

    output_dir/
      config.yaml          the resolved config           deepspeed.json  the generated DeepSpeed config
      adapter/             f_A of the last epoch          best_adapter/   f_A the selection rule kept
      pixel_anonymizer/    f_P of the last epoch          best_pixel_anonymizer/  f_P kept (train.anonymizer=pixel_unet)
      results.json         every task's numbers           results.md      the results table
      report.html          the page to look at            *.png           plots beside the results
      rejects.jsonl        videos online training dropped   tensorboard/  per-epoch event files (tracking.tensorboard)
      ray/RUN_NAME/        Ray Train checkpoints (``ray.storage_path`` moves them, e.g. to s3://)

``output_dir`` may be an object-store URI (``s3://``, ``gs://``): the run then writes into a local staging
folder (``root``, under ``$SPLAVU_STAGING``, default ``~/.cache/splavu_ray/staging``), its checkpoints go to
``output_dir/ray`` unless ``ray.storage_path`` says otherwise, and :meth:`RunFolder.publish` uploads the
staging folder to the URI (pyarrow.fs, the filesystems the manifests and feature stores use).

A sweep's folder holds its own files (study, trials.csv, pareto.csv, summary.json, pareto.png, report.html,
pareto_adapters/, tune/) and one run folder per trial under ``trials/TRIAL_ID``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BEST_ADAPTER = "best_adapter"
LATEST_ADAPTER = "adapter"
BEST_PIXEL_ANONYMIZER = "best_pixel_anonymizer"  # f_P the selection rule kept (train.anonymizer=pixel_unet)
LATEST_PIXEL_ANONYMIZER = "pixel_anonymizer"  # f_P of the last epoch
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://")


def is_remote(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names an object store (s3://, gs://) rather than a local or mounted folder."""
    return str(path or "").startswith(REMOTE_SCHEMES)


def staging_folder(uri: str) -> Path:
    """The local folder a run whose output_dir is ``uri`` writes into before :meth:`RunFolder.publish`."""
    uri = uri.rstrip("/")
    base = os.path.expanduser(os.environ.get("SPLAVU_STAGING", "~/.cache/splavu_ray/staging"))
    name = uri.rsplit("/", 1)[-1] or "run"
    return Path(base).resolve() / f"{name}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def upload_folder(folder: str | os.PathLike, uri: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Copy every file below the local ``folder`` (but the relative paths, or top-level folders, named in
    ``exclude``) to the same relative paths under ``uri``; returns the relative paths copied. Errors name the
    URI and the reason."""
    from pyarrow import fs as pafs

    folder = Path(folder)
    files = sorted(rel for p in folder.rglob("*") if p.is_file()
                   and (rel := p.relative_to(folder).as_posix()) not in exclude and rel.split("/")[0] not in exclude)
    try:
        fs, base = pafs.FileSystem.from_uri(uri.rstrip("/"))
        for rel in files:
            pafs.copy_files(str(folder / rel), f"{base}/{rel}", source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)
    except Exception as exc:  # noqa: BLE001 - unknown scheme, credentials, network: name the URI
        raise OSError(f"cannot upload {folder} to {uri}: {type(exc).__name__}: {exc}") from None
    return files


def download_folder(uri: str, folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> list[str]:
    """Copy every object below ``uri`` (but those under the top-level names in ``exclude``) to the same relative
    paths under the local ``folder``; returns the relative paths copied ([] when nothing is there yet)."""
    from pyarrow import fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(uri.rstrip("/"))
        if fs.get_file_info(base.split("/")[0]).type == pafs.FileType.NotFound:  # a bucket, not a missing folder
            raise FileNotFoundError(f"bucket {base.split('/')[0]!r} does not exist")
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        files = sorted(rel for i in infos if i.type == pafs.FileType.File
                       and (rel := i.path[len(base):].lstrip("/")).split("/")[0] not in exclude)
        for rel in files:
            (Path(folder) / rel).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(f"{base}/{rel}", str(Path(folder) / rel), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
    except Exception as exc:  # noqa: BLE001 - unknown scheme, credentials, network: name the URI
        raise OSError(f"cannot download {uri} to {folder}: {type(exc).__name__}: {exc}") from None
    return files


@dataclass(frozen=True)
class RunFolder:
    root: Path
    storage: str | None = None  # ray.storage_path; None = root/ray
    remote: str | None = None  # output_dir when it is a URI: root is then its local staging folder

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, cfg) -> "RunFolder":
        """The folder of a Config (``output_dir``, ``ray.storage_path``); an s3:// / gs:// ``output_dir`` is
        staged locally and its checkpoints default to ``output_dir/ray``."""
        if is_remote(cfg.output_dir):
            uri = cfg.output_dir.rstrip("/")
            return cls(staging_folder(uri), cfg.ray.storage_path or f"{uri}/ray", uri)
        return cls(cfg.output_path, cfg.ray.storage_path)

    @property
    def location(self) -> str:
        """Where the run's files end up: the URI of a staged folder, else the local folder."""
        return self.remote or str(self.root)

    def publish(self) -> str | None:
        """Upload the staging folder to ``output_dir`` when that is a URI (results, adapters, report, config);
        returns the URI, None for a local folder (nothing to do)."""
        if not self.remote:
            return None
        upload_folder(self.root, self.remote)
        return self.remote

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
    def trial(self, trial_id: str, remote: str | None = None) -> "RunFolder":
        """The run folder of one sweep trial (its checkpoints inside it). ``remote``: the sweep's trials URI
        (``<ray.storage_path>/<sweep name>/trials``, splavu_ray.search.spec.trials_location): the trial's
        checkpoints go to ``remote/ID/ray`` and :meth:`publish` uploads its folder to ``remote/ID``."""
        root = self.root / "trials" / trial_id
        if remote:
            uri = f"{remote.rstrip('/')}/{trial_id}"
            return RunFolder(root, f"{uri}/ray", uri)
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
