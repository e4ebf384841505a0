"""Shared by the video privacy benchmarks (PA-HMDB51, VP-HMDB51, VP-UCF101): their five attributes, the
official HMDB51 / UCF101 action splits they reuse, a user split file, and the video-level label rule.

Every row these builders write is a video (``media="video"``) with its private attributes as a video-level
set, in split ``privacy_train`` or ``privacy_test`` (the privacy task's default split names).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._common import BuilderError, Tree, check_choice, records

# The five attributes of PA-HMDB51 (Wu et al., TPAMI 2021), which VP-HMDB51 / VP-UCF101 reuse. Value codes
# (PA-HMDB51's README and annotation GUI): 0 = not visible / cannot tell, > 0 = visible / identifiable
# (skin colour 1 white, 2 brown/yellow, 3 black; face 1 partial, 2 whole; gender 1 male, 2 female;
# nudity 1 short sleeves or shorts, 2 semi-nudity; relationship 1 can tell). A list value ([1, 2]) means
# several people with different values in the same frames.
ATTRIBUTES: tuple[str, ...] = ("skin_color", "face", "gender", "nudity", "relationship")
TRAIN, TEST = "privacy_train", "privacy_test"
AGGREGATES = ("any", "majority")
_SPLIT_WORDS = {"train": TRAIN, "training": TRAIN, "1": TRAIN, TRAIN: TRAIN,
                "test": TEST, "testing": TEST, "2": TEST, TEST: TEST}


def stem(ref: str) -> str:
    """'brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi' -> 'April_09_brush_hair_u_nm_np1_ba_goo_0'."""
    base = os.path.basename(ref.replace("\\", "/"))
    root, ext = os.path.splitext(base)
    return root if ext.lower() in (".avi", ".mp4", ".mkv", ".webm", ".mov") else base


def code_present(value: object, where: str) -> bool:
    """Whether one annotated value says the attribute is present (any non-zero code)."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise BuilderError(f"{where}: expected a code >= 0 or a list of codes, got {value!r}")
    return any(v > 0 for v in values)


def video_level(ranges: object, rule: str, where: str) -> bool:
    """Aggregate one attribute's frame ranges [[start, end, value], ...] to a video-level label.

    ``any``: present when some annotated range has a non-zero value (a privacy leak anywhere in the video
    is a leak of the video). ``majority``: present when the non-zero ranges cover at least half of the
    annotated frames. Frame indices are inclusive, as in PA-HMDB51.
    """
    if not isinstance(ranges, list) or not ranges:
        raise BuilderError(f"{where}: expected a non-empty list of [start, end, value] frame ranges, got {ranges!r}")
    on = total = 0
    for entry in ranges:
        if (not isinstance(entry, list) or len(entry) != 3 or not all(isinstance(x, int) for x in entry[:2])
                or entry[1] < entry[0]):
            raise BuilderError(f"{where}: expected [start, end, value] with start <= end, got {entry!r}")
        frames = entry[1] - entry[0] + 1
        total += frames
        on += frames if code_present(entry[2], where) else 0
    return on > 0 if rule == "any" else 2 * on >= total


def check_aggregate(dataset: str, rule: str) -> None:
    check_choice(dataset, "aggregate", rule, AGGREGATES)


def hmdb51_split(tree: Tree, split: int) -> dict[str, tuple[str | None, str]]:
    """{video stem: (privacy split or None when the official split k leaves it out, action)} from
    HMDB51's '<action>_test_split<k>.txt' files ('<video>.avi <0|1|2>')."""
    check_choice(tree.dataset, "split", split, (1, 2, 3))
    suffix = f"_test_split{split}.txt"
    files = tree.glob(f"*{suffix}")
    if not files:
        raise tree.error(f"missing HMDB51 split files '<action>{suffix}' (testTrainMulti_7030_splits/); "
                         "or give your own split with split_file (CLI: --split-file)")
    out: dict[str, tuple[str | None, str]] = {}
    for path in files:
        action = path.name[: -len(suffix)]
        for lineno, (video, flag) in records(path, (2,), "'<video>.avi <0|1|2>'"):
            if flag not in ("0", "1", "2"):
                raise BuilderError(f"{path}:{lineno}: split id must be 0, 1 or 2, got {flag!r}")
            out[stem(video)] = ({"1": TRAIN, "2": TEST}.get(flag), action)
    return out


def ucf101_split(tree: Tree, split: int) -> dict[str, tuple[str | None, str]]:
    """{video stem: (privacy split, action)} from UCF101's trainlist0k.txt / testlist0k.txt."""
    check_choice(tree.dataset, "split", split, (1, 2, 3))
    out: dict[str, tuple[str | None, str]] = {}
    for name, list_name in ((TRAIN, f"trainlist0{split}.txt"), (TEST, f"testlist0{split}.txt")):
        path = tree.file(list_name)
        for _, fields in records(path, (1, 2), "'<Class>/<video>.avi [<class index>]'"):
            ref = fields[0].replace("\\", "/")
            out[stem(ref)] = (name, ref.split("/")[0])
    return out


def read_split_file(path: str) -> dict[str, str]:
    """{video stem: privacy split} from a user split file: one '<video> <train|test>' line per video."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise BuilderError(f"split file {path!r} does not exist")
    out: dict[str, str] = {}
    for lineno, (video, word) in records(p, (2,), "'<video> <train|test>'"):
        if word.lower() not in _SPLIT_WORDS:
            raise BuilderError(f"{p}:{lineno}: split must be train or test, got {word!r}")
        out[stem(video)] = _SPLIT_WORDS[word.lower()]
    return out


def split_word(value: str, where: str) -> str:
    if value.lower() not in _SPLIT_WORDS:
        raise BuilderError(f"{where}: split must be train or test, got {value!r}")
    return _SPLIT_WORDS[value.lower()]


def report_left_out(log, dataset: str, left_out: Sequence[str], why: str) -> None:
    if left_out:
        log.info("%s: %d annotated video(s) left out (%s), e.g. %s", dataset, len(left_out), why, list(left_out[:3]))


def check_both_splits(tree: Tree, splits: Iterable[str]) -> None:
    have = set(splits)
    for name in (TRAIN, TEST):
        if name not in have:
            raise tree.error(f"no annotated video falls in split {name!r}: the attacker needs both "
                             f"{TRAIN!r} and {TEST!r} (check the split files or split_file)")


def build_vp(dataset: str, layout: str, label_names: Sequence[str], official, root: str, out_path: str, *,
             split: int, labels: str | None, allow_missing: bool):
    """VP-HMDB51 / VP-UCF101: a per-video label table joined with the official action split.

    The table is a CSV with a header: 'video' (file name, with or without extension or class folder), the
    five attribute columns (integer codes, 0 = absent, > 0 = present) and optionally 'split' (train/test,
    which then overrides the official split). ``official(tree, split)`` gives {stem: (split, action)}.
    """
    from ._common import Collector, log, read_csv

    tree = Tree(dataset, root, layout)
    if labels is not None:
        table: Path | None = Path(labels).expanduser()
        if not table.is_file():
            raise BuilderError(f"{dataset}: label table {labels!r} does not exist")
    else:
        table = tree.file(*label_names)
    rows = read_csv(table, ("video", *ATTRIBUTES))
    if not rows:
        raise BuilderError(f"{table}: the label table has a header but no video rows")
    official_of = official(tree, split)
    out = Collector(tree, allow_missing=allow_missing)
    left_out: list[str] = []
    seen: dict[str, int] = {}
    for lineno, row in enumerate(rows, 2):
        where = f"{table}:{lineno}"
        if (first := seen.setdefault(stem(row["video"]), lineno)) != lineno:
            raise BuilderError(f"{where}: video {row['video']!r} is already labelled on line {first}")
        present = []
        for attr in ATTRIBUTES:
            try:
                code = int(row[attr])
            except ValueError:
                raise BuilderError(f"{where}: column {attr!r} must be an integer code >= 0, got {row[attr]!r}") from None
            if code_present(code, f"{where}, column {attr!r}"):
                present.append(attr)
        key = stem(row["video"])
        part, action = official_of.get(key, (None, None))
        if row.get("split"):
            part = split_word(row["split"], f"{where}, column 'split'")
        if action is None:  # not in the official lists: the class is the folder of a 'Class/video' entry
            ref = row["video"].replace("\\", "/")
            action = ref.split("/")[0] if "/" in ref else None
        if part is None:
            left_out.append(row["video"])
            continue
        ref = f"{action}/{key}" if action else key
        out.add(ref, split=part, media="video", action=action, private_attributes=present)
    report_left_out(log, dataset, left_out, f"not in the official split {split} and no 'split' column")
    if out.rows and (allow_missing or not out.missing):
        check_both_splits(tree, (r["split"] for r in out.rows))
    actions = sorted({r["action"] for r in out.rows if r["action"]})
    return out.write(out_path, actions, ATTRIBUTES)
