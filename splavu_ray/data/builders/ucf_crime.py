"""UCF-Crime (weakly supervised anomaly detection): Anomaly_Train.txt + the temporal test annotation."""

from __future__ import annotations

import os
import re

from ._common import BuilderError, BuiltManifest, Collector, Tree, parse, records

NAME = "ucf_crime"
LAYOUT = (
    "<root>/Anomaly_Detection_splits/{Anomaly_Train.txt ('<Class>/<video>.mp4'), "
    "Temporal_Anomaly_Annotation.txt ('<video>.mp4 <Class> <s1> <e1> <s2> <e2>', frames, -1 = none)} and "
    "the videos anywhere below <root> (Anomaly-Videos-Part-*/<Class>/, Training_Normal_Videos_Anomaly/, "
    "Testing_Normal_Videos_Anomaly/)"
)
# The 13 anomaly classes in the paper's order, then the normal videos.
CLASSES = (
    "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
    "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism", "Normal",
)  # fmt: skip
_CLASS_OF_NAME = re.compile(r"^([A-Za-z]+)")  # Arson011_x264 -> Arson, Normal_Videos_003_x264 -> Normal


def _class(path: os.PathLike[str], lineno: int, value: str) -> str:
    if value not in CLASSES:
        raise BuilderError(f"{path}:{lineno}: unknown UCF-Crime class {value!r}; known: {list(CLASSES)}")
    return value


def build(root: str, out_path: str, *, fps: float = 30.0, allow_missing: bool = False) -> BuiltManifest:
    """``fps`` converts the annotation's frame numbers to seconds (the videos are 30 fps)."""
    if not fps > 0:
        raise BuilderError(f"{NAME}: option fps={fps!r} must be > 0")
    tree = Tree(NAME, root, LAYOUT)
    out = Collector(tree, allow_missing=allow_missing)
    train = tree.file("Anomaly_Train.txt")
    for lineno, (ref,) in records(train, (1,), "'<Class>/<video>.mp4'"):
        match = _CLASS_OF_NAME.match(os.path.basename(ref))
        cls = _class(train, lineno, match.group(1) if match else ref)
        out.add(ref, split="train", media="video", action=cls, anomaly=cls != "Normal", fps=fps)

    test = tree.file("Temporal_Anomaly_Annotation.txt", "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    for lineno, (video, cls, *bounds) in records(test, (6,), "'<video>.mp4 <Class> <s1> <e1> <s2> <e2>'"):
        cls = _class(test, lineno, cls)
        s1, e1, s2, e2 = (parse(test, lineno, b, int, "frame number") for b in bounds)
        intervals = [(s, e) for s, e in ((s1, e1), (s2, e2)) if s >= 0 and e >= 0]
        if any(e < s for s, e in intervals):
            raise BuilderError(f"{test}:{lineno}: an anomaly interval ends before it starts")
        segs = [{"start": s / fps, "end": e / fps} for s, e in intervals]
        anomaly = cls != "Normal"
        out.add(video, split="test", media="video", action=cls, anomaly=anomaly, anomaly_segments=segs, fps=fps)
    return out.write(out_path, CLASSES)
