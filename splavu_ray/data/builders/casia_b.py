"""CASIA-B (gait recognition, the temporal private attribute): '<subject>-<cond>-<NN>-<view>.avi' RGB videos.

Subjects 001-074 are the standard training subjects (split ``train``), 075-124 the unseen test subjects
(split ``test``). Each subject walks 10 sequences (nm-01..06 normal, bg-01..02 with a bag, cl-01..02 in a
coat) seen from 11 views (000, 018, ..., 180 degrees). The manifest keeps CASIA-B's own file names:
the gait protocol (splavu_ray.evaluation.gait) reads condition and view from them with
:func:`parse_sequence`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ._common import IMAGE_EXTS, VIDEO_EXTS, BuiltManifest, Collector, Tree

NAME = "casia_b"
LAYOUT = (
    "<root>/**/<subject 001-124>-<nm|bg|cl>-<NN>-<view 000-180>.avi, e.g. DatasetB-1/video/001-nm-01-090.avi "
    "(the RGB video release); the frame-folder release <subject>/<cond>-<NN>/<view>/*.png is not read"
)
CONDITIONS = ("nm", "bg", "cl")
VIEWS = tuple(f"{v:03d}" for v in range(0, 181, 18))
NUM_TRAIN_SUBJECTS = 74  # the standard protocol: 001-074 train, 075-124 are the unseen test subjects
_NAME = re.compile(r"^(?P<subject>\d{3})-(?P<condition>nm|bg|cl)-(?P<index>\d{2})-(?P<view>\d{3})$")
_FRAME_DIR = re.compile(r"(^|/)\d{3}/(nm|bg|cl)-\d{2}/\d{3}$")


@dataclass(frozen=True)
class Walk:
    """One CASIA-B walk: subject '075', condition 'nm', sequence 'nm-05', view '090'."""

    subject: str
    condition: str
    sequence: str
    view: str


def parse_sequence(name: str) -> Walk | None:
    """The walk a file name or uri names ('/x/075-nm-05-090.avi'), else None."""
    stem = os.path.splitext(os.path.basename(name.replace("\\", "/")))[0]
    m = _NAME.match(stem)
    if m is None or m["view"] not in VIEWS:
        return None
    return Walk(m["subject"], m["condition"], f"{m['condition']}-{m['index']}", m["view"])


def build(root: str, out_path: str, *, unseen_only: bool = False) -> BuiltManifest:
    """``unseen_only``: keep only the test subjects 075-124 (what the gait evaluation reads; the feature
    store then skips the 74 training subjects)."""
    tree = Tree(NAME, root, LAYOUT)
    out = Collector(tree)
    seen: set[str] = set()
    frame_dirs: set[str] = set()
    for path in tree.glob("*"):
        ext = path.suffix.lower()
        if ext in IMAGE_EXTS and _FRAME_DIR.search(path.parent.as_posix()):
            frame_dirs.add(path.parent.as_posix())
        if ext not in VIDEO_EXTS or path.stem in seen or (walk := parse_sequence(path.name)) is None:
            continue
        seen.add(path.stem)  # the same walk in two containers counts once
        train = int(walk.subject) <= NUM_TRAIN_SUBJECTS
        if unseen_only and train:
            continue
        out.add(str(path), split="train" if train else "test", media="video", subject_id=walk.subject)
    if not out.rows:
        if frame_dirs:
            example = min(frame_dirs)
            raise tree.error(
                f"found {len(frame_dirs)} CASIA-B frame folder(s) such as {example!r} but no videos: the frame-folder "
                "release is not supported (jobs decode video files). Use the RGB video release, or encode each "
                "folder into one video named '<subject>-<cond>-<NN>-<view>.mp4', e.g. with ffmpeg -framerate 25 "
                "-pattern_type glob -i 'FOLDER/*.png' -c:v libx264 -pix_fmt yuv420p 001-nm-01-090.mp4"
            )
        raise tree.error("no CASIA-B video named like '001-nm-01-090.avi'"
                         + (" among the unseen subjects 075-124" if unseen_only and seen else ""))
    return out.write(out_path)
