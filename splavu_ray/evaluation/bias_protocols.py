"""Gender-presentation bias protocols (docs/method.md, "Bias"): which videos train and test the action probe.

NTU-Bias-F / NTU-Bias-M, built from any manifest with subject ids and a two-valued gender column
(NTU RGB+D 60 from ``splavu_ray.data.builders``, or the built-in data):

1. balance subjects: keep as many male as female subjects in each split (a seeded draw of the
   larger group's subjects);
2. balance videos per action: for each action, as many male as female videos (seeded draw);
3. training split only, the shortcut: for every action keep all videos of its majority group and
   enough of the other to make P(majority | action) = p (0.95). The majority is male for every action
   but one, the *flipped* action ("brushing hair" on NTU), whose majority is female: NTU-Bias-F.
   NTU-Bias-M is the mirror (female majority everywhere, male for the flipped action).
The test split stays balanced (steps 1-2), so a probe that learnt the shortcut is less accurate on
the minority group of each action; the per-group accuracy gap measures it.

The natural protocol (Toyota Smarthome style) keeps the dataset's own, naturally imbalanced splits.
Functions here select row indices; they never look at features.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Literal, Sequence

import numpy as np

FEMALE, MALE = "female", "male"
GROUPS = (FEMALE, MALE)
NTU_FLIPPED_ACTION = "brushing hair"
Variant = Literal["F", "M"]
_ALIASES = {"f": FEMALE, "female": FEMALE, "woman": FEMALE, "m": MALE, "male": MALE, "man": MALE}


class BiasProtocolError(ValueError):
    """The rows cannot support a bias protocol (labels missing, a group absent, ...)."""


def gender_group(value: Any) -> str | None:
    """'f' / 'female' / 'F' -> 'female' (and the same for male); None for anything else."""
    return _ALIASES.get(str(value).strip().lower()) if value is not None else None


def check_labels(rows: Sequence[dict], where: str) -> None:
    """Every row needs an action, a subject id and a female/male group; both groups must appear."""
    if not rows:
        raise BiasProtocolError(f"{where}: no rows")
    problems = []
    for col, ok in (("action_id", lambda r: r.get("action_id") is not None and r["action_id"] >= 0),
                    ("subject_id", lambda r: bool(r.get("subject_id"))),
                    ("gender", lambda r: gender_group(r.get("gender")) is not None)):
        bad = sum(1 for r in rows if not ok(r))
        if bad:
            problems.append(f"{bad} of {len(rows)} rows lack a usable {col!r}")
    if problems:
        raise BiasProtocolError(f"{where}: {'; '.join(problems)} (gender must be female/male or f/m; the NTU "
                                "builder fills it from subject_gender.csv)")
    present = {gender_group(r["gender"]) for r in rows}
    if present != set(GROUPS):
        raise BiasProtocolError(f"{where}: needs both female and male rows, found only {sorted(present)}")


def balance_subjects(rows: Sequence[dict], idx: Iterable[int], rng: np.random.Generator) -> np.ndarray:
    """Indices of the rows whose subjects survive a draw that leaves equally many per group."""
    idx = np.asarray(sorted(idx), dtype=np.int64)
    subjects: dict[str, set] = {g: set() for g in GROUPS}
    for i in idx:
        subjects[gender_group(rows[i]["gender"])].add(rows[i]["subject_id"])
    n = min(len(s) for s in subjects.values())
    keep = set()
    for s in subjects.values():
        ordered = sorted(s)
        keep.update(ordered[j] for j in rng.permutation(len(ordered))[:n])
    return np.asarray([i for i in idx if rows[i]["subject_id"] in keep], dtype=np.int64)


def _by_action_and_group(rows: Sequence[dict], idx: Iterable[int]) -> dict[int, dict[str, list[int]]]:
    out: dict[int, dict[str, list[int]]] = defaultdict(lambda: {g: [] for g in GROUPS})
    for i in sorted(idx):
        out[int(rows[i]["action_id"])][gender_group(rows[i]["gender"])].append(int(i))
    return out


def balance_videos(rows: Sequence[dict], idx: Iterable[int], rng: np.random.Generator) -> np.ndarray:
    """Per action, a seeded draw of min(#male, #female) videos from each group."""
    keep = []
    for _, groups in sorted(_by_action_and_group(rows, idx).items()):
        n = min(len(v) for v in groups.values())
        for g in GROUPS:
            keep.extend(groups[g][j] for j in rng.permutation(len(groups[g]))[:n])
    return np.asarray(sorted(keep), dtype=np.int64)


def skew_videos(rows: Sequence[dict], idx: Iterable[int], majority: dict[int, str], p: float,
                rng: np.random.Generator) -> np.ndarray:
    """Per action keep every video of its majority group and round(n * (1 - p) / p) of the other
    (at least one, so the minority group is seen), giving P(majority | action) ~= p."""
    if not 0.5 <= p < 1.0:
        raise BiasProtocolError(f"the shortcut strength p must lie in [0.5, 1), got {p}")
    keep = []
    for a, groups in sorted(_by_action_and_group(rows, idx).items()):
        major = majority[a]
        minor = FEMALE if major == MALE else MALE
        n_minor = min(len(groups[minor]), max(1, round(len(groups[major]) * (1 - p) / p)))
        keep.extend(groups[major])
        keep.extend(groups[minor][j] for j in rng.permutation(len(groups[minor]))[:n_minor])
    return np.asarray(sorted(keep), dtype=np.int64)


def resolve_flipped_action(actions: Sequence[str], requested: str | None) -> str:
    """The action whose majority is flipped: ``requested``, else NTU's 'brushing hair' when the
    vocabulary has it, else the vocabulary's first action."""
    if requested is not None:
        if requested not in actions:
            raise BiasProtocolError(f"flipped action {requested!r} is not in the action vocabulary {list(actions)}")
        return requested
    if not actions:
        raise BiasProtocolError("the manifest has no action vocabulary")
    return NTU_FLIPPED_ACTION if NTU_FLIPPED_ACTION in actions else actions[0]


def ntu_bias(train_rows: Sequence[dict], test_rows: Sequence[dict], actions: Sequence[str], variant: Variant,
             flipped_action: str | None = None, p: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """NTU-Bias-F (``variant='F'``) or -M: {"train": indices, "test": indices, "flipped_action": name}."""
    if variant not in ("F", "M"):
        raise BiasProtocolError(f"NTU-Bias variant must be 'F' or 'M', got {variant!r}")
    check_labels(train_rows, "bias training split")
    check_labels(test_rows, "bias test split")
    flipped = resolve_flipped_action(actions, flipped_action)
    rng = np.random.default_rng([seed, 0 if variant == "F" else 1])
    usual, flip = (MALE, FEMALE) if variant == "F" else (FEMALE, MALE)
    majority = defaultdict(lambda: usual, {actions.index(flipped): flip})
    train = balance_videos(train_rows, balance_subjects(train_rows, range(len(train_rows)), rng), rng)
    train = skew_videos(train_rows, train, majority, p, rng)
    test = balance_videos(test_rows, balance_subjects(test_rows, range(len(test_rows)), rng), rng)
    if not len(train) or not len(test):
        raise BiasProtocolError(f"NTU-Bias-{variant}: nothing left after balancing ({len(train)} train, {len(test)} test "
                                "videos): every action needs videos of both groups")
    return {"train": train, "test": test, "flipped_action": flipped}


def natural(train_rows: Sequence[dict], test_rows: Sequence[dict]) -> dict[str, Any]:
    """The dataset's own splits, as imbalanced as they are (Toyota Smarthome style)."""
    check_labels(train_rows, "bias training split")
    check_labels(test_rows, "bias test split")
    return {"train": np.arange(len(train_rows)), "test": np.arange(len(test_rows)), "flipped_action": None}


def natural_cross_subject(train_rows: Sequence[dict], test_rows: Sequence[dict]) -> dict[str, Any]:
    """Toyota Smarthome's natural protocol: its cross-subject splits as published, every video kept with
    the imbalance it was recorded with. The splits must share no subject (else it is not cross-subject).
    Adds "subjects": the number of subjects per group in each split."""
    sel = natural(train_rows, test_rows)
    shared = sorted({r["subject_id"] for r in train_rows} & {r["subject_id"] for r in test_rows})
    if shared:
        raise BiasProtocolError(f"subject(s) {shared[:5]} appear in both the training and the test split: the "
                                "natural protocol needs a cross-subject split (the toyota_smarthome builder's)")
    sel["subjects"] = {}
    for split, rows in (("train", train_rows), ("test", test_rows)):
        per = {g: set() for g in GROUPS}
        for r in rows:
            per[gender_group(r["gender"])].add(r["subject_id"])
        sel["subjects"][split] = {g: len(s) for g, s in per.items()}
    return sel


def group_shares(rows: Sequence[dict], idx: Iterable[int]) -> dict[str, float]:
    """Fraction of the selected rows in each group (describes a protocol's imbalance)."""
    groups = [gender_group(rows[i]["gender"]) for i in idx]
    return {g: groups.count(g) / max(1, len(groups)) for g in GROUPS}


def majority_share(rows: Sequence[dict], idx: Iterable[int]) -> dict[str, float]:
    """P(most common group | action) over the selected rows, keyed by action id."""
    out = {}
    for a, groups in sorted(_by_action_and_group(rows, idx).items()):
        sizes = [len(v) for v in groups.values()]
        out[a] = max(sizes) / sum(sizes)
    return out
