"""Helpers shared by every dataset builder: one walk of the root, line/CSV parsing, errors, writing.

Builders never decode media; they only read annotation files and check that each named file exists.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TypeVar

from ..manifest import Manifest, write_manifest

log = logging.getLogger("splavu_ray.data.builders")

VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
T = TypeVar("T")


class BuilderError(ValueError):
    """The on-disk layout does not match the dataset's public layout; the message names the file."""


@dataclass(frozen=True)
class BuiltManifest(Manifest):
    """A freshly written manifest plus the media the annotations named but the disk lacked."""

    missing: tuple[str, ...] = ()


class Tree:
    """One walk of a dataset root: annotation files by name, media files by stem.

    Looking files up by name (not by a fixed relative path) accepts the usual unpacking variants
    (annotations beside the videos, in a sub-folder, videos split over Part-1..N folders).
    """

    def __init__(self, dataset: str, root: str | os.PathLike[str], layout: str) -> None:
        self.dataset, self.layout = dataset, layout
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
        if not self.root.is_dir():
            raise BuilderError(f"{dataset}: root folder {self.root} does not exist. Expected layout: {layout}")
        self._by_name: dict[str, list[Path]] = defaultdict(list)
        self._by_stem: dict[str, list[Path]] = defaultdict(list)
        self._by_lower: dict[str, list[Path]] = defaultdict(list)
        seen: set[str] = set()
        # Follows symlinks (video folders are often links to network storage), each real folder once.
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames.clear()
                continue
            seen.add(real)
            dirnames.sort()  # deterministic: shallower and alphabetically first wins ties
            for name in sorted(filenames):
                path = Path(dirpath) / name
                self._by_name[name].append(path)
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTS + IMAGE_EXTS:
                    self._by_stem[stem].append(path)
                    self._by_lower[stem.lower()].append(path)

    def error(self, message: str) -> BuilderError:
        return BuilderError(f"{self.dataset}: {message} (root {self.root}). Expected layout: {self.layout}")

    def optional(self, *names: str) -> Path | None:
        """The shallowest file called like the first of ``names`` that exists, else None."""
        for name in names:
            if hits := self._by_name.get(name):
                return min(hits, key=lambda p: (len(p.parts), str(p)))
        return None

    def file(self, *names: str) -> Path:
        """Like :meth:`optional` but a missing file is an error naming it."""
        path = self.optional(*names)
        if path is None:
            alt = f" (or {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
            raise self.error(f"missing annotation file {names[0]!r}{alt}")
        return path

    def glob(self, pattern: str) -> list[Path]:
        return sorted(p for name, hits in self._by_name.items() if fnmatch(name, pattern) for p in hits)

    def media(self, ref: str, exts: Sequence[str]) -> Path | None:
        """The media file an annotation names, e.g. 'Class/v_x.avi' or a bare stem.

        Matched by stem with any of ``exts`` (containers differ between mirrors); case-insensitively
        as a fallback (UCF101's 'HandstandPushups' / 'HandStandPushups'); among duplicates, the one
        under the annotation's own folder wins (UCF-Crime ships some videos twice).
        """
        ref = ref.replace("\\", "/")
        stem, ext = os.path.splitext(os.path.basename(ref))
        if ext.lower() not in exts:  # a bare stem such as Kinetics' '<id>_<start>_<end>'
            stem = os.path.basename(ref)
        for table, key in ((self._by_stem, stem), (self._by_lower, stem.lower())):
            if hits := [p for p in table.get(key, ()) if p.suffix.lower() in exts]:
                folder = "/" + os.path.dirname(ref).lower()
                return min(hits, key=lambda p: (not ("/" + p.parent.as_posix().lower()).endswith(folder), len(p.parts)))
        return None


def records(path: Path, counts: Sequence[int], what: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of every non-empty line; a wrong field count is an error.

    Tolerates CRLF endings and a UTF-8 BOM, which the official UCF/THUMOS text files carry.
    """
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in counts:
                raise BuilderError(f"{path}:{lineno}: expected {what}, got {line.strip()!r}")
            yield lineno, fields


def parse(path: Path, lineno: int, value: str, kind: Callable[[str], T], what: str) -> T:
    try:
        return kind(value)
    except ValueError:
        raise BuilderError(f"{path}:{lineno}: {what} must be a {kind.__name__}, got {value!r}") from None


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise BuilderError(f"{path}: missing CSV column(s) {missing}; header is {header}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def check_choice(dataset: str, option: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise BuilderError(f"{dataset}: option {option}={value!r} must be one of {list(choices)}")


class Collector:
    """Accumulates rows, resolves each annotation's media to an absolute path, writes the manifest."""

    def __init__(self, tree: Tree, *, allow_missing: bool = False, exts: Sequence[str] = VIDEO_EXTS) -> None:
        self.tree, self.allow_missing, self.exts = tree, allow_missing, tuple(exts)
        self.rows: list[dict[str, Any]] = []
        self.missing: list[str] = []

    def add(self, ref: str, **row: Any) -> None:
        path = self.tree.media(ref, self.exts)
        if path is None:
            self.missing.append(ref)
            return
        self.rows.append({"uri": str(path), "dataset": self.tree.dataset, **row})

    def write(self, out_path: str, actions: Sequence[str] = (), attributes: Sequence[str] = ()) -> BuiltManifest:
        total = len(self.rows) + len(self.missing)
        if self.missing and (not self.allow_missing or not self.rows):
            raise self.tree.error(
                f"{len(self.missing)} of {total} media file(s) named by the annotations were not found, "
                f"first {self.missing[0]!r}" + ("" if self.allow_missing else "; allow_missing=True (CLI: --allow-missing) skips them")
            )
        if not self.rows:
            raise self.tree.error("the annotations list no media")
        if self.missing:
            log.warning(
                "%s: %d of %d media file(s) are missing and were skipped, e.g. %s",
                self.tree.dataset, len(self.missing), total, self.missing[:3],
            )  # fmt: skip
        m = write_manifest(out_path, self.rows, actions, attributes)
        return BuiltManifest(m.table, m.actions, m.attributes, missing=tuple(self.missing))


_GENDER_CODES = {"m": "male", "f": "female"}


def read_subject_genders(path: Path) -> dict[int, str]:
    """A user-provided subject-gender CSV (columns subject,gender): {subject number: gender}.

    Subjects may be written as numbers or with a letter prefix ('3', 'P003', 'p03'); 'M'/'F' become
    'male'/'female', any other value is kept as written (lower case)."""
    table: dict[int, str] = {}
    for lineno, row in enumerate(read_csv(path, ("subject", "gender")), 2):
        subject = row["subject"].upper().removeprefix("P")
        if not subject.isdigit() or not row["gender"]:
            raise BuilderError(f"{path}:{lineno}: expected 'subject,gender' like '1,female' or 'P001,male', got {row}")
        gender = row["gender"].lower()
        table[int(subject)] = _GENDER_CODES.get(gender, gender)
    return table


def subject_genders(tree: Tree, genders: str | None) -> tuple[dict[int, str], Path | None]:
    """The subject-gender table of a build: the CSV ``genders`` names (an error if absent), else the
    shallowest 'subject_gender.csv' under the root, else none (({}, None), with a warning)."""
    if genders is not None:
        path: Path | None = Path(genders).expanduser()
        if not path.is_file():
            raise BuilderError(f"{tree.dataset}: subject-gender table {genders!r} does not exist")
    else:
        path = tree.optional("subject_gender.csv")
    if path is None:
        log.warning("%s: no subject_gender.csv under %s: the gender column stays empty", tree.dataset, tree.root)
        return {}, None
    return read_subject_genders(path), path
