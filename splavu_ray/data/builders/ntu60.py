"""NTU RGB+D 60 (gender-presentation bias protocol): 'SsssCcccPpppRrrrAaaa_rgb.avi' + a subject-gender table."""

from __future__ import annotations

import re

from ._common import BuiltManifest, Collector, Tree, check_choice, log, subject_genders

NAME = "ntu60"
LAYOUT = (
    "<root>/nturgb+d_rgb/SsssCcccPpppRrrrAaaa_rgb.avi and, for the gender column, "
    "<root>/subject_gender.csv (columns subject,gender; subject as 1 or P001)"
)
ACTIONS = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe",
    "wear on glasses", "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up",
    "hand waving", "kicking something", "reach into pocket", "hopping (one foot jumping)", "jump up",
    "make a phone call/answer phone", "playing with phone/tablet", "typing on a keyboard",
    "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute",
    "put the palms together", "cross hands in front (say stop)", "sneeze/cough", "staggering",
    "falling", "touch head (headache)", "touch chest (stomachache/heart pain)", "touch back (backache)",
    "touch neck (neckache)", "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
)  # fmt: skip
# Official cross-subject training subjects (Shahroudy et al., CVPR 2016); cross-view trains on cameras 2, 3.
XSUB_TRAIN_SUBJECTS = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
XVIEW_TRAIN_CAMERAS = frozenset({2, 3})
_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})_rgb\.avi$")


def build(root: str, out_path: str, *, protocol: str = "xsub", genders: str | None = None) -> BuiltManifest:
    """``genders``: the subject-gender CSV (default: 'subject_gender.csv' under root; without one the
    gender column stays empty). ``protocol``: 'xsub' (cross-subject, the bias protocol's) or 'xview'."""
    check_choice(NAME, "protocol", protocol, ("xsub", "xview"))
    tree = Tree(NAME, root, LAYOUT)
    gender_of, table_path = subject_genders(tree, genders)

    out = Collector(tree)
    skipped, no_gender = 0, set()
    for path in tree.glob("S*C*P*R*A*_rgb.avi"):
        if not (m := _NAME.match(path.name)):
            continue
        setup, camera, subject, _, action = (int(g) for g in m.groups())
        if setup > 17 or action > len(ACTIONS):  # NTU RGB+D 120 additions: not part of NTU-60
            skipped += 1
            continue
        train = subject in XSUB_TRAIN_SUBJECTS if protocol == "xsub" else camera in XVIEW_TRAIN_CAMERAS
        if gender_of and subject not in gender_of:
            no_gender.add(subject)
        out.add(
            str(path), split="train" if train else "test", media="video", action=ACTIONS[action - 1],
            subject_id=f"P{subject:03d}", gender=gender_of.get(subject),
        )  # fmt: skip
    if not out.rows:
        raise tree.error("no NTU-60 video named like 'S001C001P001R001A001_rgb.avi'")
    if skipped:
        log.info("%s: skipped %d NTU RGB+D 120-only videos (setup > 17 or action > 60)", NAME, skipped)
    if no_gender:
        log.warning("%s: %s has no row for subject(s) %s", NAME, table_path, sorted(no_gender))
    return out.write(out_path, ACTIONS)
