"""The built-in synthetic privacy dataset: procedural actors, written as real H.264 videos + PNGs + a manifest.

Why it looks like this (docs/synthetic.md has the full description):
- Appearance (skin tone, body shape, face covered or not, scene, shirt colour) is fixed per subject or
  per video and never depends on the action, except through ``cfg.bias`` on the train/val splits.
- The action lives only in the motion: every action passes through near-idle poses, raise_arms and
  lower_arms are exact time reversals of each other, and all actions are left/right symmetric (walk
  direction and the waving/kicking side are random), so horizontal-flip augmentation keeps labels valid
  and a single frame is ambiguous while a clip is not.
- Everything random is drawn from generators seeded by (seed, split, index), so the output does not
  depend on the number of workers or on the order in which items are rendered.
- Labels (subjects, actions, segments, anomalies) are planned in the parent process, cheaply; workers
  only render and encode pixels.
- The test split's subjects are not the train/val subjects f_A trains on, so re-identification on test
  measures unseen people.
- ``cfg.domain`` picks the renderer: ``studio`` (this module) or ``urban`` (synthetic_urban: other
  figures, scenes, light, camera motion, frame size and clip length). The plan is the same for both, so
  the labels are too (only the trimmed clips' frame count differs).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..config import SyntheticConfig
from ..progress import Progress
from .manifest import write_manifest
from .person_masks import write_mask

GENERATOR_VERSION = "4"  # bump whenever the pixels or labels change: it is part of the cache key
# (4: person masks beside every file and a person_mask manifest column; pixels and labels as in 3)
DATASET = "synthetic"
ACTIONS: tuple[str, ...] = (
    "wave", "clap", "walk", "jump", "squat", "spin", "kick", "bow", "raise_arms", "lower_arms",
)
ATTRIBUTES: tuple[str, ...] = ("skin_dark", "gender_f", "face_visible", "scene_outdoor", "clothing_red")
ANOMALIES: tuple[str, ...] = ("fall", "erratic", "object")
# Target prevalence of the subject-level attributes (scene_outdoor is drawn per video with p=0.5).
PREVALENCE = {"skin_dark": 0.5, "gender_f": 0.5, "face_visible": 0.6, "clothing_red": 0.4}
# f_A trains on the train/val subjects; test holds other people, so re-identification (scored on test) asks
# whether f_A hides identities it never saw (the CASIA-B protocol on unseen subjects).
NUM_TRAIN_SUBJECTS = 36  # train and val
NUM_TEST_SUBJECTS = 24  # test (re-id chance 1/24); the untrimmed splits draw from both pools
DOMAINS = ("studio", "urban")  # the first is the default; see synthetic_urban for the second
NUM_PRETRAIN_SUBJECTS = 24  # disjoint pool: the demo encoder never sees an evaluation subject
UNTRIMMED_SECONDS = 8.0  # short untrimmed videos: many of them cost fewer windows than a few long ones
EVENT_SECONDS = {"action": (2.0, 3.0), "anomaly": (2.0, 3.0)}  # 2-3 one-second windows per event
MIN_GAP_SECONDS = 0.5  # idle between events
BIASED_SPLITS = ("train", "val")  # test and pretrain stay balanced (NTU-Bias protocol)
CODEC_OPTIONS = {"crf": "18", "preset": "veryfast", "g": "16", "bf": "0", "threads": "1"}

SKIN_TONES = np.array(
    [(255, 224, 196), (236, 192, 160), (212, 162, 120), (160, 110, 75), (118, 78, 52), (80, 52, 36)], np.float32
)  # indices >= 3 are "skin_dark"
SHIRTS_RED = np.array([(200, 30, 35), (150, 20, 30), (230, 75, 60)], np.float32)
SHIRTS_OTHER = np.array(
    [(40, 80, 190), (30, 140, 60), (220, 190, 40), (125, 125, 135), (235, 235, 235), (110, 50, 150)], np.float32
)
TROUSERS = np.array([(40, 40, 60), (75, 62, 50), (30, 50, 100), (90, 90, 90)], np.float32)
HAIR = np.array([(22, 16, 10), (70, 45, 25), (150, 110, 60), (205, 175, 115), (105, 105, 105)], np.float32)


# --------------------------------------------------------------------------- appearance


@dataclass(frozen=True)
class Appearance:
    """Everything fixed about how one person looks (and moves: gait is a private trait too)."""

    subject_id: str | None
    skin: int  # index into SKIN_TONES
    female: bool  # body shape: narrow shoulders / wide hips, usually skirt and long hair
    face_visible: bool  # False: the head is covered (hood/helmet), no face features
    shirt: tuple[float, float, float]
    red_shirt: bool
    trousers: tuple[float, float, float]
    hair: tuple[float, float, float]
    long_hair: bool
    skirt: bool
    height: float  # body scale factor
    tempo: float  # personal motion style: speed and amplitude of every movement
    vigour: float

    @property
    def gender(self) -> str:
        return "f" if self.female else "m"


def sample_appearance(rng: np.random.Generator, subject_id: str | None = None, **fixed: bool) -> Appearance:
    """One person; ``fixed`` may pin skin_dark, gender_f, face_visible, clothing_red (else Bernoulli)."""
    flag = {k: bool(fixed[k]) if k in fixed else bool(rng.random() < p) for k, p in PREVALENCE.items()}
    female, red = flag["gender_f"], flag["clothing_red"]
    shirt = (SHIRTS_RED if red else SHIRTS_OTHER)[rng.integers(len(SHIRTS_RED if red else SHIRTS_OTHER))]
    return Appearance(
        subject_id=subject_id,
        skin=int(rng.integers(3, 6) if flag["skin_dark"] else rng.integers(0, 3)),
        female=female,
        face_visible=flag["face_visible"],
        shirt=tuple(float(c) for c in shirt),
        red_shirt=red,
        trousers=tuple(float(c) for c in TROUSERS[rng.integers(len(TROUSERS))]),
        hair=tuple(float(c) for c in HAIR[rng.integers(len(HAIR))]),
        long_hair=bool(rng.random() < (0.8 if female else 0.15)),
        skirt=bool(female and rng.random() < 0.7),
        height=float(rng.uniform(0.9, 1.1)),
        tempo=float(rng.uniform(0.85, 1.15)),
        vigour=float(rng.uniform(0.85, 1.15)),
    )


def make_subjects(rng: np.random.Generator, n: int, prefix: str) -> list[Appearance]:
    """``n`` subjects, genders exactly balanced, other attributes stratified to their prevalence."""
    cols = {k: rng.permutation(np.arange(n) < round(p * n)) for k, p in PREVALENCE.items()}
    cols["gender_f"] = rng.permutation(np.arange(n) % 2 == 0)
    return [sample_appearance(rng, f"{prefix}{i:03d}", **{k: bool(v[i]) for k, v in cols.items()}) for i in range(n)]


def private_attributes(app: Appearance, outdoor: bool) -> list[str]:
    present = {
        "skin_dark": app.skin >= 3,
        "gender_f": app.female,
        "face_visible": app.face_visible,
        "scene_outdoor": outdoor,
        "clothing_red": app.red_shirt,
    }
    return [a for a in ATTRIBUTES if present[a]]


# --------------------------------------------------------------------------- motion
# A pose is a dict of per-frame arrays. Angles in radians: arms/legs measured from hanging straight down,
# positive = rotating away from the body's midline; b/k are elbow/knee bends relative to the upper limb.

POSE_KEYS = ("x", "jump", "width", "torso", "aL", "bL", "aR", "bR", "hL", "kL", "hR", "kR", "fall")
Pose = dict[str, np.ndarray]


@dataclass(frozen=True)
class Motion:
    """Per-instance randomness of one action (period, phase, amplitude, side)."""

    period: float  # seconds per cycle
    phase: float  # fraction of a cycle
    amp: float
    side: int  # -1 or +1: which arm waves / leg kicks / walking direction

    @staticmethod
    def sample(rng: np.random.Generator, app: Appearance, side: int | None = None) -> "Motion":
        return Motion(
            period=float(rng.uniform(0.55, 0.95) / app.tempo),
            phase=float(rng.random()),
            amp=float(rng.uniform(0.85, 1.15) * app.vigour),
            side=int(side if side is not None else rng.choice([-1, 1])),
        )


def idle_pose(t: np.ndarray, app: Appearance, phase: float = 0.0) -> Pose:
    """Standing still: slow sway and breathing, so that 'no action' is not a frozen picture."""
    slow = np.sin(2 * np.pi * (0.35 * t * app.tempo + phase))
    z = np.zeros_like(t)
    return {
        "x": 0.01 * slow, "jump": z.copy(), "width": np.ones_like(t), "torso": 1.0 + 0.01 * slow,
        "aL": 0.13 + 0.03 * slow, "bL": 0.1 + z, "aR": 0.13 - 0.03 * slow, "bR": 0.1 + z,
        "hL": 0.06 + z, "kL": z.copy(), "hR": 0.06 + z, "kR": z.copy(), "fall": z.copy(),
    }


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def action_pose(action: str, t: np.ndarray, duration: float, m: Motion, base: Pose) -> Pose:
    """Pose of ``action`` at local times ``t`` (seconds) of an instance lasting ``duration`` seconds."""
    p = {k: v.copy() for k, v in base.items()}
    c = 2 * np.pi * (t / m.period + m.phase)
    s, a = np.sin(c), m.amp
    up = np.maximum(s, 0.0)
    bend = (1 - np.cos(c)) / 2  # 0 -> 1 -> 0 once per cycle, starting from neutral at phase 0
    arm, leg = ("aL", "bL") if m.side < 0 else ("aR", "bR"), ("hL", "kL") if m.side < 0 else ("hR", "kR")
    if action == "wave":
        p[arm[0]][:], p[arm[1]] = 2.4, 0.5 + 0.6 * a * s
    elif action == "clap":
        p["aL"][:] = p["aR"][:] = 0.45
        p["bL"] = p["bR"] = -0.7 - 1.5 * a * (1 + s) / 2  # forearms swing from outward to meeting in front
    elif action == "walk":
        p["hL"] = p["hR"] = 0.32 * a * s  # legs scissor (open / crossed) in the image plane
        p["kL"] = p["kR"] = 0.2 * (1 + np.cos(c)) / 2
        p["aL"] = p["aR"] = 0.15 - 0.2 * a * s
        p["x"] = p["x"] + m.side * 0.2 * a * t
    elif action == "jump":
        crouch = np.maximum(-s, 0.0)
        p["jump"] = 0.18 * a * up
        p["hL"] = p["hR"] = 0.35 * crouch
        p["kL"] = p["kR"] = -0.7 * crouch
        p["aL"] = p["aR"] = 0.3 + 2.2 * up
    elif action == "squat":
        p["hL"] = p["hR"] = 0.6 * a * bend
        p["kL"] = p["kR"] = -1.2 * a * bend
        p["aL"] = p["aR"] = 0.15 + 1.3 * bend
    elif action == "spin":
        p["width"] = np.cos(c)  # rotation about the vertical axis, seen from the front
        p["aL"][:] = p["aR"][:] = 1.45
    elif action == "kick":
        p[leg[0]] = 0.1 + 1.1 * a * up**1.5
        p[leg[1]] = -0.3 * up
        other = "aR" if m.side < 0 else "aL"
        p[other] = 0.4 + 0.8 * up
    elif action == "bow":
        p["torso"] = 1.0 - 0.45 * a * bend
    elif action in ("raise_arms", "lower_arms"):
        # One monotonic movement over the whole instance: its direction is the label, so any clip holding
        # half of it is decidable while any single frame is not (the two classes share every pose).
        u = _smoothstep((t / max(duration, 1e-6) - 0.05 * m.phase) / (0.9 + 0.05 * m.amp))
        u = u if action == "raise_arms" else 1 - u
        p["aL"] = p["aR"] = 0.13 + 2.75 * u
        p["bL"] = p["bR"] = 0.1 + 0.2 * np.sin(np.pi * u)
    else:
        raise ValueError(f"unknown action {action!r}")
    return p


def anomaly_pose(kind: str, t: np.ndarray, duration: float, rng: np.random.Generator, base: Pose) -> Pose:
    """An anomalous event on top of ``base``; 'object' leaves the actor alone (the renderer draws it)."""
    p = {k: v.copy() for k, v in base.items()}
    if kind == "fall":  # topple sideways, lie still, get up again
        down = _smoothstep(t / 0.45) * _smoothstep((duration - t) / 0.5)
        p["fall"] = rng.choice([-1.0, 1.0]) * (np.pi / 2) * down
        flail = np.sin(2 * np.pi * 3 * t) * (down > 0.05) * (down < 0.95)
        p["aL"] = p["aL"] + 1.5 * down + 0.8 * flail
        p["aR"] = p["aR"] + 1.5 * down - 0.8 * flail
    elif kind == "erratic":  # convulsive limbs and jerky lurches
        n = len(t)
        for k in ("aL", "aR", "hL", "hR", "bL", "bR"):
            p[k] = p[k] + rng.uniform(-1.0, 1.0, n) * (1.6 if k[0] == "a" else 0.6)
        p["x"] = p["x"] + np.cumsum(rng.normal(0, 0.04, n))
        p["width"] = np.where(rng.random(n) < 0.2, -p["width"], p["width"])
    elif kind != "object":
        raise ValueError(f"unknown anomaly {kind!r}")
    return p


@dataclass(frozen=True)
class Event:
    """A timed segment of an untrimmed video, in frames [start, end)."""

    kind: str  # "action" or "anomaly"
    label: str
    start: int
    end: int


def plan_timeline(rng: np.random.Generator, n_frames: int, fps: float, kinds: list[tuple[str, str]]) -> list[Event]:
    """Place events (kind, label) in random order, non-overlapping, separated by idle gaps."""
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    lengths = [round(fps * rng.uniform(*EVENT_SECONDS[k])) for k, _ in kinds]
    min_gap = max(1, round(MIN_GAP_SECONDS * fps))
    while kinds and sum(lengths) + min_gap * (len(kinds) + 1) > n_frames:  # tiny configs: drop what won't fit
        kinds, lengths = kinds[:-1], lengths[:-1]
    spare = n_frames - sum(lengths) - min_gap * (len(kinds) + 1)
    gaps = min_gap + np.floor(spare * rng.dirichlet(np.ones(len(kinds) + 1))).astype(int)
    events, pos = [], 0
    for (kind, label), length, gap in zip(kinds, lengths, gaps):
        pos += int(gap)
        events.append(Event(kind, label, pos, pos + length))
        pos += length
    return events


def timeline_pose(
    events: list[Event], n_frames: int, fps: float, app: Appearance, rng: np.random.Generator
) -> tuple[Pose, np.ndarray]:
    """Idle everywhere, events blended in with short ramps; returns the pose and per-frame object flags."""
    t = np.arange(n_frames) / fps
    pose = idle_pose(t, app, rng.random())
    obj = np.zeros(n_frames, bool)
    offset = 0.0  # walking moves the actor for good; walk back toward the centre to stay in frame
    for ev in events:
        sl = slice(ev.start, ev.end)
        local = t[sl] - t[ev.start]
        dur = (ev.end - ev.start) / fps
        base = {k: v[sl].copy() for k, v in pose.items()}
        if ev.kind == "action":
            side = (-1 if offset > 0 else 1) if ev.label == "walk" else None
            new = action_pose(ev.label, local, dur, Motion.sample(rng, app, side), base)
        else:
            new = anomaly_pose(ev.label, local, dur, rng, base)
            obj[sl] = ev.label == "object"
        env = _smoothstep(local / 0.15) * _smoothstep((dur - local) / 0.15)
        shift = new["x"] - base["x"]
        for k in POSE_KEYS:
            pose[k][sl] = base[k] + env * (new[k] - base[k])
        pose["x"][sl] = base["x"] + shift  # no ramp on displacement: the actor ends where it walked to
        pose["x"][ev.end :] += shift[-1]
        offset += float(shift[-1])
    return pose, obj


# --------------------------------------------------------------------------- skeleton and raster


def skeleton(p: Pose, app: Appearance) -> dict[str, np.ndarray]:
    """Joint positions (T, 2) in body units (~1 = body height), feet on the ground line y = 0.44."""
    w, torso = p["width"], p["torso"]
    sw, hw = (0.11, 0.12) if app.female else (0.155, 0.08)
    pts: dict[str, np.ndarray] = {}

    def at(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        return np.stack(np.broadcast_arrays(np.asarray(x, np.float32) * w, np.asarray(y, np.float32)), -1)

    def direction(side: int, angle: np.ndarray) -> np.ndarray:
        return np.stack([side * np.sin(angle) * w, np.cos(angle)], -1)

    pts["neck"] = at(0.0, -0.4 * torso)
    pts["head"] = at(0.0, -0.4 * torso - 0.12)
    for side, s in ((-1, "L"), (1, "R")):
        pts["shoulder" + s] = at(side * sw, -0.38 * torso)
        pts["elbow" + s] = pts["shoulder" + s] + 0.17 * direction(side, p["a" + s])
        pts["hand" + s] = pts["elbow" + s] + 0.16 * direction(side, p["a" + s] + p["b" + s])
        pts["hip" + s] = at(side * hw, 0.0)
        pts["knee" + s] = pts["hip" + s] + 0.22 * direction(side, p["h" + s])
        pts["foot" + s] = pts["knee" + s] + 0.22 * direction(side, p["h" + s] + p["k" + s])
        pts["torso" + s] = at(side * (sw + 0.02), -0.4 * torso)  # torso corners, top then bottom
        pts["waist" + s] = at(side * (hw + 0.03), 0.02)
        pts["hem" + s] = at(side * (hw + 0.1), 0.22)
        pts["eye" + s] = at(side * 0.032, -0.4 * torso - 0.13)  # face features turn with the body (spin)
        pts["mouth" + s] = at(side * 0.02, -0.4 * torso - 0.08)
    lift = 0.44 - np.maximum(pts["footL"][:, 1], pts["footR"][:, 1]) - p["jump"]  # stand on the ground
    pivot = (pts["footL"] + pts["footR"]) / 2 + np.stack([0 * lift, lift], -1)
    cos, sin = np.cos(p["fall"])[:, None], np.sin(p["fall"])[:, None]
    out = {}
    for k, v in pts.items():
        v = v + np.stack([0 * lift, lift], -1) - pivot
        v = np.stack([cos[:, 0] * v[:, 0] - sin[:, 0] * v[:, 1], sin[:, 0] * v[:, 0] + cos[:, 0] * v[:, 1]], -1)
        out[k] = v + pivot + np.stack([p["x"], 0 * lift], -1)
    return out


def _capsule(a: np.ndarray, b: np.ndarray, r: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (T, H, W) of a thick segment a-b (pixel coords (T, 2))."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = b[:, 0, None, None] - ax, b[:, 1, None, None] - ay
    u = np.clip(((xx - ax) * dx + (yy - ay) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    d = np.hypot(xx - ax - u * dx, yy - ay - u * dy)
    return np.clip(r - d + 0.5, 0.0, 1.0)


def _polygon(vs: list[np.ndarray], xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a convex polygon whose vertices (T, 2) are in order (either winding)."""
    area = sum(vs[i][:, 0] * vs[i - 1][:, 1] - vs[i - 1][:, 0] * vs[i][:, 1] for i in range(len(vs)))
    sign = np.where(area >= 0, 1.0, -1.0)[:, None, None]
    dist = None
    for i in range(len(vs)):
        p0, p1 = vs[i - 1], vs[i]
        ex, ey = p1[:, 0] - p0[:, 0], p1[:, 1] - p0[:, 1]
        norm = np.hypot(ex, ey) + 1e-6
        nx, ny = (ey / norm)[:, None, None], (-ex / norm)[:, None, None]
        d = sign * -((xx - p0[:, 0, None, None]) * nx + (yy - p0[:, 1, None, None]) * ny)
        dist = d if dist is None else np.maximum(dist, d)
    return np.clip(0.5 - dist, 0.0, 1.0)


Shape = tuple[list[np.ndarray], float | None, tuple[float, float, float]]  # points, capsule radius (None: polygon), colour


def actor_shapes(j: dict[str, np.ndarray], app: Appearance, scale: float) -> list[Shape]:
    """The actor as capsules and polygons in pixel coordinates, back to front."""
    skin = tuple(float(c) for c in SKIN_TONES[app.skin])
    up = np.array([0, 0.025 * scale], np.float32)
    shapes: list[Shape] = []
    if app.long_hair:  # behind the torso: shows beside the neck and around the head
        shapes.append(([j["head"], 1.5 * j["neck"] - 0.5 * j["head"]], 0.1 * scale, app.hair))
    for s in "LR":
        shapes += [([j["hip" + s], j["knee" + s]], 0.045 * scale, app.trousers),
                   ([j["knee" + s], j["foot" + s]], 0.04 * scale, app.trousers)]
    if app.skirt:
        shapes.append(([j["waistL"], j["waistR"], j["hemR"], j["hemL"]], None, app.trousers))
    shapes.append(([j["neck"], j["head"]], 0.035 * scale, skin))
    shapes.append(([j["torsoL"], j["torsoR"], j["waistR"], j["waistL"]], None, app.shirt))
    for s in "LR":  # short sleeves, bare forearms
        shapes += [([j["shoulder" + s], j["elbow" + s]], 0.04 * scale, app.shirt),
                   ([j["elbow" + s], j["hand" + s]], 0.033 * scale, skin)]
    if not app.long_hair:  # short hair: a cap peeking out above the face
        shapes.append(([j["head"] - up], 0.09 * scale, app.hair))
    if app.face_visible:
        shapes.append(([j["head"]], 0.085 * scale, skin))
        shapes += [([j["eye" + s]], max(0.014 * scale, 0.55), (25.0, 20.0, 20.0)) for s in "LR"]
        shapes.append(([j["mouthL"], j["mouthR"]], max(0.008 * scale, 0.45), (120.0, 40.0, 40.0)))
    else:  # covered head: hood/helmet in the hair colour, no skin, no features
        shapes.append(([j["head"]], 0.09 * scale, app.hair))
    return shapes


def paint(img: np.ndarray, shapes: list[Shape]) -> None:
    """Alpha-blend shapes into ``img`` (T, H, W, 3 float32) in place, each only inside its bounding box
    over the T frames (the box, not the frame, is what costs: ~10x faster than full-frame shapes)."""
    _, h, w, _ = img.shape
    for pts, r, colour in shapes:
        allp = np.concatenate(pts)
        pad = (r or 0.0) + 1.5
        x0, y0 = np.maximum(np.floor(allp.min(0) - pad).astype(int), 0)
        x1, y1 = np.ceil(allp.max(0) + pad).astype(int)
        x1, y1 = min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        xx = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, :]
        yy = (np.arange(y0, y1, dtype=np.float32) + 0.5)[:, None]
        alpha = _capsule(pts[0], pts[-1], max(r, 0.6), xx, yy) if r is not None else _polygon(pts, xx, yy)
        region = img[:, y0:y1, x0:x1]
        region += alpha[..., None] * (np.asarray(colour, np.float32) - region)


def background(rng: np.random.Generator, outdoor: bool, res: int) -> np.ndarray:
    """A static scene (H, W, 3 float32): sky + grass, or wall + floor, each with random texture."""
    y = (np.arange(res, dtype=np.float32)[:, None] + 0.5) / res * np.ones((1, res), np.float32)
    x = (np.arange(res, dtype=np.float32)[None, :] + 0.5) / res * np.ones((res, 1), np.float32)
    horizon = rng.uniform(0.45, 0.7)
    below = (y > horizon)[..., None]
    if outdoor:
        sky = np.array((105, 155, 230), np.float32) + (y / horizon)[..., None] * np.array((85, 60, 10), np.float32)
        grass = np.array([(70, 140, 60), (95, 150, 70), (120, 130, 60)], np.float32)[rng.integers(3)]
        f1, f2, ph = rng.uniform(3, 9), rng.uniform(3, 9), rng.uniform(0, 2 * np.pi, 2)
        blotch = np.sin(2 * np.pi * f1 * x + ph[0]) * np.sin(2 * np.pi * f2 * y + ph[1])
        img = np.where(below, grass + 18 * blotch[..., None], sky)
        for _ in range(rng.integers(1, 4)):  # trees on the horizon
            cx, r = rng.uniform(0, 1), rng.uniform(0.05, 0.12)
            tree = ((x - cx) ** 2 + (y - horizon + r * 0.6) ** 2) < r * r
            img = np.where(tree[..., None], np.array((35, 90, 40), np.float32), img)
    else:
        wall = np.array([(210, 200, 180), (180, 190, 200), (200, 180, 170), (170, 170, 160)], np.float32)[rng.integers(4)]
        floor = np.array([(140, 100, 60), (120, 90, 70), (160, 140, 110)], np.float32)[rng.integers(3)]
        period, ph = rng.uniform(0.08, 0.2), rng.uniform(0, 1)
        stripes = (((x / period + ph) % 1.0) < 0.5).astype(np.float32) * 2 - 1
        planks = ((((y - horizon) * 12) % 1.0) < 0.1).astype(np.float32)
        img = np.where(below, floor - 30 * planks[..., None], wall + 10 * stripes[..., None])
    return img.astype(np.float32)


@dataclass(frozen=True)
class View:
    """Per-video camera and lighting nuisance: where the actor stands, how big, how lit, how noisy."""

    ground_x: float  # pixels
    ground_y: float
    scale: float  # pixels per body unit
    gain: np.ndarray  # (3,) colour-cast gain
    noise: float  # Gaussian pixel noise sigma (0-255 scale)

    @staticmethod
    def sample(rng: np.random.Generator, res: int, app: Appearance) -> "View":
        return View(
            ground_x=res * rng.uniform(0.38, 0.62),
            ground_y=res * rng.uniform(0.86, 0.93),
            scale=res * rng.uniform(0.52, 0.64) * app.height,
            gain=(rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32),
            noise=float(rng.uniform(1.5, 4.0)),
        )


def render(
    pose: Pose, app: Appearance, bg: np.ndarray, view: View, rng: np.random.Generator,
    obj: np.ndarray | None = None, chunk: int = 32, person_mask: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3); rendered in chunks of frames to bound memory at high resolution.
    ``person_mask`` (T, H, W) bool, when given, is filled with where the actor's shapes cover any part of a
    pixel (painted without drawing from ``rng``, so the frames are the same with or without it)."""
    n, res = len(pose["x"]), bg.shape[0]
    joints = {k: np.stack([view.ground_x + view.scale * v[:, 0], view.ground_y + view.scale * (v[:, 1] - 0.44)], -1)
              .astype(np.float32) for k, v in skeleton(pose, app).items()}
    flicker = 1 + 0.01 * rng.standard_normal(n).astype(np.float32)
    obj_path = _object_path(rng, obj, res) if obj is not None and obj.any() else None
    out = np.empty((n, res, res, 3), np.uint8)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        img = np.repeat(bg[None], sl.stop - lo, 0)
        shapes = actor_shapes({k: v[sl] for k, v in joints.items()}, app, view.scale)
        paint(img, shapes)
        if person_mask is not None:
            cover = np.zeros((sl.stop - lo, res, res, 1), np.float32)
            paint(cover, [(pts, r, (1.0,)) for pts, r, _ in shapes])
            person_mask[sl] = cover[..., 0] > 0
        if obj_path is not None:  # a ball hurled across the scene (parked far off-frame when absent)
            path = np.where(obj[sl, None], obj_path[sl], np.float32(-10 * res))
            paint(img, [([path], 0.2 * res, (255.0, 200.0, 0.0))])
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(view.noise)
        img = img * view.gain * flicker[sl, None, None, None] + noise
        out[sl] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


def _object_path(rng: np.random.Generator, obj: np.ndarray, res: int) -> np.ndarray:
    """A big ball rolling once across the frame, low over the ground, during the frames flagged in ``obj``:
    in view for the whole event, so every window inside it shows it."""
    u = np.clip((np.cumsum(obj) - 1) / max(int(obj.sum()) - 1, 1), 0.0, 1.0)
    x0, x1 = (-0.1 * res, 1.1 * res) if rng.random() < 0.5 else (1.1 * res, -0.1 * res)
    y = res * rng.uniform(0.55, 0.7) - 0.08 * res * np.abs(np.sin(3 * np.pi * u))  # a few low bounces
    return np.stack([x0 + u * (x1 - x0), y], -1).astype(np.float32)


# --------------------------------------------------------------------------- files


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, 3H/2, W) planar yuv420p, BT.601 limited range (FFmpeg's default
    for rgb24 -> yuv420p). Done in numpy for the whole video: per-frame swscale calls cost 2/3 of encoding."""
    t, h, w, _ = frames.shape
    r, g, b = (frames[..., c].astype(np.float32) for c in range(3))
    y = 16 + 0.25679 * r + 0.50413 * g + 0.09791 * b
    r, g, b = ((x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25 for x in (r, g, b))
    u = 128 - 0.14822 * r - 0.29099 * g + 0.43922 * b
    v = 128 + 0.43922 * r - 0.36779 * g - 0.07143 * b
    planes = np.concatenate([x.reshape(t, -1) for x in (y, u, v)], 1).reshape(t, h * 3 // 2, w)
    return np.clip(planes + 0.5, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 / yuv420p mp4 with fixed encoder settings (single-threaded x264). The frames are a pure function
    of the item; the bitstream usually is too, but x264 has been seen to encode the same frames at another
    rate-control quality (~39 dB apart) in a long-lived process, so nothing may key on file bytes."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(CODEC_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i, yuv in enumerate(rgb_to_yuv420p(frames)):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Minimal deterministic PNG writer (8-bit RGB, no filter): no imaging library needed."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------- planning


@dataclass
class Item:
    """One file to produce: its manifest row plus what the renderer needs that the row does not say."""

    row: dict[str, Any]
    path: str  # relative to the dataset root
    app: Appearance
    outdoor: bool
    seed: tuple[int, ...]  # seeds the renderer's own generator
    action: str | None = None  # trimmed videos / images: the action performed (images: only a pose source)
    events: list[Event] = field(default_factory=list)
    n_frames: int = 1


def _key(seed: int, split: str, index: int) -> tuple[int, ...]:
    return (seed % 2**64, zlib.crc32(split.encode()), index)  # SeedSequence wants non-negative ints


def _biased_groups(rng: np.random.Generator, actions: np.ndarray, bias: float) -> np.ndarray:
    """Gender group per video (True = f). Each action prefers one group (f for even action ids, m for odd,
    so both groups stay equally common); exactly round((0.5 + bias/2) * n_a) of its n_a videos get it."""
    female = np.zeros(len(actions), bool)
    for a in np.unique(actions):
        idx = np.flatnonzero(actions == a)
        preferred = rng.permutation(np.arange(len(idx)) < round((0.5 + bias / 2) * len(idx)))
        female[idx] = preferred if a % 2 == 0 else ~preferred
    return female


def subject_pool(split: str) -> str:
    """Which subjects a trimmed split draws from: 'pretrain', 'unseen' (test) or 'seen' (train, val, others)."""
    return {"pretrain": "pretrain", "test": "unseen"}.get(split, "seen")


def trimmed_length(cfg: SyntheticConfig) -> int:
    """Frames per trimmed video in the configured domain (urban clips are longer)."""
    if cfg.domain == "urban":
        from .synthetic_urban import trimmed_frames

        return trimmed_frames(cfg.num_frames)
    return cfg.num_frames


def frame_size(cfg: SyntheticConfig) -> tuple[int, int]:
    """(height, width) of every frame in the configured domain."""
    if cfg.domain == "urban":
        from .synthetic_urban import frame_size as urban_size

        return urban_size(cfg.resolution)
    return cfg.resolution, cfg.resolution


def plan(cfg: SyntheticConfig) -> list[Item]:
    """Every item of the dataset with its final labels (cheap: no pixels)."""
    if cfg.resolution % 2:
        raise ValueError(f"synthetic.resolution must be even for yuv420p H.264, got {cfg.resolution}")
    rng = np.random.default_rng([cfg.seed % 2**64, 1])
    subjects = {"seen": make_subjects(rng, NUM_TRAIN_SUBJECTS, "s"), "pretrain": make_subjects(rng, NUM_PRETRAIN_SUBJECTS, "p"),
                "unseen": make_subjects(rng, NUM_TEST_SUBJECTS, "u")}
    everyone = subjects["seen"] + subjects["unseen"]
    trimmed_frames = trimmed_length(cfg)
    items: list[Item] = []

    def video_row(split: str, i: int, app: Appearance, outdoor: bool, n: int, **extra: Any) -> tuple[dict, str]:
        path = f"videos/{split}/{split}_{i:05d}.mp4"
        row = {"dataset": DATASET, "split": split, "media": "video", "subject_id": app.subject_id,
               "gender": app.gender, "private_attributes": private_attributes(app, outdoor),
               "anomaly": False, "num_frames": n, "fps": float(cfg.fps), **extra}
        return row, path

    for split, count in cfg.videos_per_split.items():  # trimmed action videos
        srng = np.random.default_rng([cfg.seed % 2**64, 2, zlib.crc32(split.encode())])
        pool = subjects[subject_pool(split)]
        actions = srng.permutation(np.arange(count) % len(ACTIONS))  # balanced classes
        female = _biased_groups(srng, actions, cfg.bias if split in BIASED_SPLITS else 0.0)
        groups = {g: [s for s in pool if s.female == g] for g in (True, False)}
        for i, (a, f) in enumerate(zip(actions, female)):
            app = groups[bool(f)][srng.integers(len(groups[bool(f)]))]
            outdoor = bool(srng.random() < 0.5)
            row, path = video_row(split, i, app, outdoor, trimmed_frames, action=ACTIONS[a], action_id=int(a))
            items.append(Item(row, path, app, outdoor, _key(cfg.seed, split, i), ACTIONS[a], n_frames=trimmed_frames))

    n_long = round(UNTRIMMED_SECONDS * cfg.fps)
    for part, count in cfg.untrimmed_videos.items():  # THUMOS and UCF-Crime analogues
        for task in ("tad", "anomaly"):
            split = f"{task}_{part}"
            srng = np.random.default_rng([cfg.seed % 2**64, 3, zlib.crc32(split.encode())])
            abnormal = srng.permutation(np.arange(count) < (count + 1) // 2) if task == "anomaly" else np.zeros(count, bool)
            for i in range(count):
                app = everyone[srng.integers(len(everyone))]
                outdoor = bool(srng.random() < 0.5)
                # Two events per video. An anomalous video swaps one action for its anomaly, so the number of
                # events and the idle time say nothing about the label: only what happens does.
                kinds = [("action", ACTIONS[srng.integers(len(ACTIONS))]) for _ in range(2 - int(abnormal[i]))]
                if abnormal[i]:
                    kinds.append(("anomaly", ANOMALIES[srng.integers(len(ANOMALIES))]))
                events = plan_timeline(srng, n_long, cfg.fps, kinds)
                segs = [{"start": e.start / cfg.fps, "end": e.end / cfg.fps, "label": e.label} for e in events if e.kind == "action"]
                anoms = [{"start": e.start / cfg.fps, "end": e.end / cfg.fps} for e in events if e.kind == "anomaly"]
                row, path = video_row(split, i, app, outdoor, n_long, segments=segs, anomaly=bool(anoms), anomaly_segments=anoms)
                items.append(Item(row, path, app, outdoor, _key(cfg.seed, split, i), events=events, n_frames=n_long))

    for part, count in cfg.privacy_images.items():  # VISPR analogue: fresh people, random poses
        split = f"privacy_{part}"
        srng = np.random.default_rng([cfg.seed % 2**64, 4, zlib.crc32(split.encode())])
        for i in range(count):
            app = sample_appearance(srng)
            outdoor = bool(srng.random() < 0.5)
            path = f"images/{split}/{split}_{i:05d}.png"
            row = {"dataset": DATASET, "split": split, "media": "image", "gender": app.gender,
                   "private_attributes": private_attributes(app, outdoor), "anomaly": False, "num_frames": 1}
            items.append(Item(row, path, app, outdoor, _key(cfg.seed, split, i), ACTIONS[srng.integers(len(ACTIONS))]))
    return items


# --------------------------------------------------------------------------- rendering and generation


def item_pose(item: Item, fps: int, rng: np.random.Generator) -> tuple[Pose, np.ndarray | None]:
    """The motion of one item (shared by both domains: it is what the labels mean) and, for untrimmed
    videos, the per-frame flags of the 'object' anomaly (None otherwise)."""
    if item.events or item.row["media"] == "video" and item.action is None:
        return timeline_pose(item.events, item.n_frames, fps, item.app, rng)
    if item.row["media"] == "image":  # one instant of a random action
        t = np.array([rng.uniform(0, 2.0)], np.float32)
        return action_pose(item.action, t, 2.0, Motion.sample(rng, item.app), idle_pose(t, item.app, rng.random())), None
    t = np.arange(item.n_frames) / fps
    motion = Motion.sample(rng, item.app)
    pose = action_pose(item.action, t, item.n_frames / fps, motion, idle_pose(t, item.app, rng.random()))
    if item.action == "walk":  # centre the walk on the standing point so position says nothing about direction
        pose["x"] -= (pose["x"][0] + pose["x"][-1]) / 2
    return pose, None


def render_item(item: Item, cfg: SyntheticConfig, person_mask: np.ndarray | None = None) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one item; depends only on the item and cfg. ``person_mask`` (T, H, W)
    bool, when given, receives the person's extent per frame (the frames do not change)."""
    rng = np.random.default_rng(list(item.seed))
    if cfg.domain == "urban":  # the second domain: its own renderer, the same motion and labels
        from .synthetic_urban import render_urban

        pose, obj = item_pose(item, cfg.fps, rng)
        return render_urban(item, cfg, pose, obj, person_mask=person_mask)
    bg = background(rng, item.outdoor, cfg.resolution)
    view = View.sample(rng, cfg.resolution, item.app)
    pose, obj = item_pose(item, cfg.fps, rng)
    return render(pose, item.app, bg, view, rng, obj, person_mask=person_mask)


def mask_path(item_path: str) -> str:
    """Where the person mask of the file ``item_path`` lives, relative to the dataset root."""
    return str(Path("masks", *Path(item_path).parts[1:]).with_suffix(".npz"))


def _write_items(root: str, cfg_json: str, items: list[Item]) -> int:
    cfg = SyntheticConfig.model_validate_json(cfg_json)
    for item in items:
        h, w = frame_size(cfg)
        mask = np.zeros((item.n_frames, h, w), bool)
        frames = render_item(item, cfg, person_mask=mask)
        write_mask(Path(root) / mask_path(item.path), mask)
        path = Path(root) / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if item.row["media"] == "image":
            write_png(path, frames[0])
        else:
            write_video(path, frames, cfg.fps)
    return len(items)


def _batches(items: list[Item], frames_per_batch: int = 256) -> list[list[Item]]:
    """Group items into tasks of similar cost, long videos first (better load balance at the end)."""
    ordered = sorted(items, key=lambda it: -it.n_frames)
    out: list[list[Item]] = [[]]
    for it in ordered:
        if out[-1] and sum(x.n_frames for x in out[-1]) + it.n_frames > frames_per_batch:
            out.append([])
        out[-1].append(it)
    return [b for b in out if b]


def generate(cfg: SyntheticConfig, root: Path, workers: int = 2, uri_root: Path | None = None) -> Path:
    """Write every file and ``root/manifest.parquet``; return the manifest path.

    URIs in the manifest are absolute paths under ``uri_root`` (default ``root``): ensure_synthetic
    generates in a temporary folder that is renamed to ``uri_root`` once complete."""
    root = Path(root)
    uri_base = Path(uri_root or root).expanduser().absolute()
    start = time.perf_counter()
    items = plan(cfg)
    cfg_json = cfg.model_dump_json()
    batches = _batches(items)
    total = len(items)
    root.mkdir(parents=True, exist_ok=True)
    with Progress(total, "synthetic", unit="file") as progress:
        if workers <= 1:
            for b in batches:
                progress.update(_write_items(str(root), cfg_json, b))
        else:  # spawn: safe even when the caller holds threads (Ray, torch)
            with ProcessPoolExecutor(min(workers, len(batches)), mp_context=get_context("spawn")) as pool:
                for n in pool.map(_write_items, [str(root)] * len(batches), [cfg_json] * len(batches), batches):
                    progress.update(n)
    rows = [{**it.row, "uri": str(uri_base / it.path), "person_mask": str(uri_base / mask_path(it.path))} for it in items]
    (root / "synthetic.json").write_text(json.dumps(
        {"generator_version": GENERATOR_VERSION, "config": cfg.model_dump(mode="json"),
         "files": total, "seconds": round(time.perf_counter() - start, 2)}, indent=1))
    write_manifest(str(root / "manifest.parquet"), rows, actions=ACTIONS, attributes=ATTRIBUTES)
    print(f"[synthetic] wrote {total} files + manifest to {root} in {time.perf_counter() - start:.1f} s",
          file=sys.stderr, flush=True)
    return root / "manifest.parquet"


def fingerprint(cfg: SyntheticConfig) -> str:
    blob = json.dumps({"v": GENERATOR_VERSION, "cfg": cfg.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def dataset_dir(cfg: SyntheticConfig, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir).expanduser() / f"synthetic-{fingerprint(cfg)}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock; released by the OS if the holder dies, so it can never go stale."""
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks: the atomic rename alone still keeps the cache whole
            pass
        yield


def ensure_synthetic(cfg: SyntheticConfig, cache_dir: str | os.PathLike, workers: int = 2) -> Path:
    """Manifest path of the dataset for ``cfg`` in ``cache_dir``, generating it once if needed.

    The dataset is built in a hidden temporary folder and renamed into place when complete, so a
    folder named ``synthetic-<hash>`` is always whole; a lock makes concurrent callers wait for the
    first one instead of generating twice; temporary folders left by killed runs are removed."""
    final = dataset_dir(cfg, cache_dir)
    manifest = final / "manifest.parquet"
    if manifest.is_file():
        return manifest
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        if manifest.is_file():  # another process finished while we waited
            return manifest
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # not ours and incomplete (e.g. hand-made): never trust it
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        try:
            generate(cfg, tmp, workers, uri_root=final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest
