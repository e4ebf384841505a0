"""Toyota Smarthome, trimmed (natural gender-presentation bias): '<Activity>_pNN_rNN_vNN_cNN.mp4' + a gender table."""

from __future__ import annotations

import re

from ._common import VIDEO_EXTS, BuiltManifest, Collector, Tree, log, subject_genders

NAME = "toyota_smarthome"
LAYOUT = (
    "<root>/mp4/<Activity>_p<subject>_r<take>_v<clip>_c<camera>.mp4 (e.g. Cook.Cleandishes_p02_r00_v02_c03.mp4) "
    "and, for the gender column, <root>/subject_gender.csv (columns subject,gender; subject as 2, p02 or P02)"
)
# The 31 activities of the cross-subject protocol, in the order (class ids 0-30) of the dataset
# authors' skeleton baseline (2s-AGCN for daily living, data_gen/smarthome_gendata.py).
ACTIONS = (
    "Cook.Cleandishes", "Cook.Cleanup", "Cook.Cut", "Cook.Stir", "Cook.Usestove", "Cutbread",
    "Drink.Frombottle", "Drink.Fromcan", "Drink.Fromcup", "Drink.Fromglass", "Eat.Attable", "Eat.Snack",
    "Enter", "Getup", "Laydown", "Leave", "Makecoffee.Pourgrains", "Makecoffee.Pourwater",
    "Maketea.Boilwater", "Maketea.Insertteabag", "Pour.Frombottle", "Pour.Fromcan", "Pour.Fromkettle",
    "Readbook", "Sitdown", "Takepills", "Uselaptop", "Usetelephone", "Usetablet", "Walk", "WatchTV",
)  # fmt: skip
# Official cross-subject (CS) protocol (Das et al., ICCV 2019): these 11 subjects train, the other 7
# (p02, p10, p11, p14, p16, p18, p20) test.
CS_TRAIN_SUBJECTS = frozenset({3, 4, 6, 7, 9, 12, 13, 15, 17, 19, 25})
_NAME = re.compile(r"^(?P<activity>[A-Za-z.]+)_p(?P<subject>\d{2,3})_r(?P<take>\d{2})_(?P<clip>[a-z]?\d{2})"
                   r"_c(?P<camera>\d{2})$")


def build(root: str, out_path: str, *, genders: str | None = None) -> BuiltManifest:
    """``genders``: the subject-gender CSV (default: 'subject_gender.csv' under root; Toyota Smarthome
    publishes none, so without one the gender column stays empty). Splits: the cross-subject protocol."""
    tree = Tree(NAME, root, LAYOUT)
    gender_of, table_path = subject_genders(tree, genders)
    out = Collector(tree)
    no_gender: set[int] = set()
    seen: set[str] = set()
    for path in tree.glob("*_p*_r*_c*"):
        stem, ext = path.stem, path.suffix.lower()
        if ext not in VIDEO_EXTS or stem in seen or not (m := _NAME.match(stem)):
            continue  # skeleton .json / .npz files share the name; a mirror in another container counts once
        seen.add(stem)
        activity, subject = m["activity"], int(m["subject"])
        if activity not in ACTIONS:
            raise tree.error(f"{path.name}: activity {activity!r} is not one of the 31 cross-subject activities")
        if gender_of and subject not in gender_of:
            no_gender.add(subject)
        out.add(
            str(path), split="train" if subject in CS_TRAIN_SUBJECTS else "test", media="video", action=activity,
            subject_id=f"p{subject:02d}", gender=gender_of.get(subject),
        )  # fmt: skip
    if not out.rows:
        raise tree.error("no Toyota Smarthome clip named like 'Cook.Cleandishes_p02_r00_v02_c03.mp4'")
    if no_gender:
        log.warning("%s: %s has no row for subject(s) %s", NAME, table_path, sorted(no_gender))
    return out.write(out_path, ACTIONS)
