"""The second built-in domain, ``urban``: the same planned labels as the ``studio`` domain, drawn another way.

No recipe, sweep or threshold was chosen on this domain. It exists to check that numbers measured on
the first domain are not a property of one renderer: the labels (actions, private attributes, subjects,
TAD segments, anomalies) come from :func:`splavu_ray.data.synthetic.plan` unchanged, and everything
visual is produced here by separate code:

- figures are built from rotated ellipses (not capsules and polygons), with other body proportions
  (larger head, shorter legs), shoes, a helmet with a visor for a covered face, beards, ponytails and
  dresses; skin, clothing and hair come from this module's own palettes, fixed per subject;
- scenes are a street (buildings with lit windows, road and pavement) or an office (a wall with a
  window and a door, a tiled floor), not sky/grass or a striped wall;
- light falls from one side (a horizontal ramp), with a vignette and a slow drift in brightness and
  colour temperature, instead of a uniform colour cast with per-frame flicker;
- the camera pans slowly (the scene and the actor shift together);
- frames are 4:3 (``resolution`` high, ``4/3 * resolution`` wide) and trimmed clips are 1.5x longer.

The motion of each action and anomaly (splavu_ray.data.synthetic's pose functions) is shared: it is
what defines the labels, so it must mean the same thing in both domains.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

# splavu_ray.data.synthetic calls this module (never the other way round): it plans the items, computes
# their motion and hands over the pose. Appearance, Item and Pose below are that module's types.
Appearance = Any
Item = Any
Pose = dict[str, np.ndarray]

LENGTH_FACTOR = 1.5  # trimmed clips: 1.5x the studio domain's num_frames
ASPECT = 4 / 3

SKIN = np.array(
    [(246, 214, 190), (228, 186, 150), (200, 150, 108), (150, 96, 62), (108, 68, 44), (70, 44, 32)], np.float32
)  # same ordering convention as the studio palette: indices >= 3 are "skin_dark"
JACKETS_RED = np.array([(178, 24, 44), (210, 50, 30), (128, 18, 24), (236, 60, 90)], np.float32)
JACKETS_OTHER = np.array(
    [(20, 120, 130), (28, 40, 90), (200, 160, 30), (90, 110, 40), (60, 60, 66), (150, 130, 200), (240, 150, 40)],
    np.float32,
)
LEGS = np.array([(24, 26, 34), (96, 84, 70), (50, 70, 120), (130, 120, 100), (70, 30, 40)], np.float32)
HAIR = np.array([(12, 10, 8), (90, 55, 30), (180, 130, 70), (220, 200, 160), (150, 60, 30)], np.float32)
HELMETS = np.array([(30, 30, 34), (230, 230, 225), (200, 40, 40), (40, 70, 160)], np.float32)


def frame_size(resolution: int) -> tuple[int, int]:
    """(height, width) of the urban domain's frames: 4:3, both even (yuv420p)."""
    return resolution, 2 * round(resolution * ASPECT / 2)


def trimmed_frames(num_frames: int) -> int:
    return round(num_frames * LENGTH_FACTOR)


@dataclass(frozen=True)
class Look:
    """How one person appears in this domain (fixed per subject: an identity cue)."""

    skin: np.ndarray
    jacket: np.ndarray
    legs: np.ndarray
    hair: np.ndarray
    helmet: np.ndarray
    shoes: np.ndarray
    beard: bool
    ponytail: bool
    dress: bool
    stocky: float  # torso width factor


def look(app: Appearance, key: tuple[int, ...]) -> Look:
    """This domain's look for ``app``: the private attributes decide the palette family and the body
    shape; the rest is drawn from a generator seeded by the subject (or the item, for images)."""
    seed = [zlib.crc32(app.subject_id.encode()), 7] if app.subject_id else [*key, 7]
    rng = np.random.default_rng(seed)
    jackets = JACKETS_RED if app.red_shirt else JACKETS_OTHER
    return Look(
        skin=SKIN[app.skin],
        jacket=jackets[rng.integers(len(jackets))],
        legs=LEGS[rng.integers(len(LEGS))],
        hair=HAIR[rng.integers(len(HAIR))],
        helmet=HELMETS[rng.integers(len(HELMETS))],
        shoes=np.array((20, 20, 20) if rng.random() < 0.6 else (235, 235, 235), np.float32),
        beard=bool(not app.female and rng.random() < 0.45),
        ponytail=bool(app.female and rng.random() < 0.8),
        dress=bool(app.female and rng.random() < 0.6),
        stocky=float(rng.uniform(0.9, 1.15)),
    )


# --------------------------------------------------------------------------- figure


def figure_joints(p: Pose, app: Appearance, stocky: float) -> dict[str, np.ndarray]:
    """Joint positions (T, 2) in body units; feet on the ground line y = 0.4. Big head, short legs."""
    w, torso = p["width"], p["torso"]
    sw, hw = (0.1 * stocky, 0.125) if app.female else (0.15 * stocky, 0.085)
    j: dict[str, np.ndarray] = {}

    def pt(x, y) -> np.ndarray:
        return np.stack(np.broadcast_arrays(np.asarray(x, np.float32) * w, np.asarray(y, np.float32)), -1)

    def limb(side: int, angle: np.ndarray) -> np.ndarray:
        return np.stack([side * np.sin(angle) * w, np.cos(angle)], -1)

    j["neck"] = pt(0.0, -0.36 * torso)
    j["head"] = pt(0.0, -0.36 * torso - 0.14)
    j["chest"] = pt(0.0, -0.25 * torso)
    j["belly"] = pt(0.0, -0.06)
    for side, s in ((-1, "L"), (1, "R")):
        j["shoulder" + s] = pt(side * sw, -0.33 * torso)
        j["elbow" + s] = j["shoulder" + s] + 0.15 * limb(side, p["a" + s])
        j["hand" + s] = j["elbow" + s] + 0.14 * limb(side, p["a" + s] + p["b" + s])
        j["hip" + s] = pt(side * hw, 0.0)
        j["knee" + s] = j["hip" + s] + 0.19 * limb(side, p["h" + s])
        j["foot" + s] = j["knee" + s] + 0.19 * limb(side, p["h" + s] + p["k" + s])
        j["eye" + s] = pt(side * 0.04, -0.36 * torso - 0.155)
    lift = 0.4 - np.maximum(j["footL"][:, 1], j["footR"][:, 1]) - p["jump"]
    up = np.stack([0 * lift, lift], -1)
    pivot = (j["footL"] + j["footR"]) / 2 + up
    c, s_ = np.cos(p["fall"]), np.sin(p["fall"])
    out = {}
    for k, v in j.items():
        v = v + up - pivot
        v = np.stack([c * v[:, 0] - s_ * v[:, 1], s_ * v[:, 0] + c * v[:, 1]], -1)
        out[k] = v + pivot + np.stack([p["x"], 0 * lift], -1)
    return out


# A blob: centre (T, 2), radii rx, ry (T,), angle (T,), colour.
Blob = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _blob(c: np.ndarray, rx, ry, angle, colour) -> Blob:
    n = len(c)
    return (c, np.broadcast_to(np.asarray(rx, np.float32), (n,)), np.broadcast_to(np.asarray(ry, np.float32), (n,)),
            np.broadcast_to(np.asarray(angle, np.float32), (n,)), np.asarray(colour, np.float32))


def _bone(a: np.ndarray, b: np.ndarray, thick: float, colour) -> Blob:
    """An ellipse spanning the segment a-b (its long axis along the bone)."""
    d = b - a
    half = np.hypot(d[:, 0], d[:, 1]) / 2
    return _blob((a + b) / 2, half + thick * 0.6, np.full(len(a), thick, np.float32),
                 np.arctan2(d[:, 1], d[:, 0]), colour)


def figure_blobs(j: dict[str, np.ndarray], app: Appearance, lk: Look, scale: float) -> list[Blob]:
    """The figure as ellipses in pixel coordinates, back to front."""
    u = scale
    tilt = np.arctan2(j["neck"][:, 1] - j["belly"][:, 1], j["neck"][:, 0] - j["belly"][:, 0]) + np.pi / 2
    blobs: list[Blob] = []
    if lk.ponytail:  # a ponytail hanging behind the head
        blobs.append(_bone(j["head"], 0.4 * j["head"] + 0.6 * j["chest"], 0.045 * u, lk.hair))
    for s in "LR":
        blobs += [_bone(j["hip" + s], j["knee" + s], 0.05 * u, lk.legs),
                  _bone(j["knee" + s], j["foot" + s], 0.042 * u, lk.legs),
                  _blob(j["foot" + s], 0.045 * u, 0.025 * u, tilt, lk.shoes)]
    if lk.dress:
        blobs.append(_blob((j["hipL"] + j["hipR"]) / 2 + (j["kneeL"] + j["kneeR"] - j["hipL"] - j["hipR"]) / 5,
                           0.16 * u, 0.12 * u, tilt, lk.jacket * 0.8))
    if app.female:  # hourglass: narrow chest, wide hips
        blobs.append(_blob(j["belly"], 0.14 * u, 0.1 * u, tilt, lk.jacket * 0.9))
        blobs.append(_blob(j["chest"], 0.11 * u * lk.stocky, 0.15 * u, tilt, lk.jacket))
    else:  # broad, boxy shoulders
        blobs.append(_blob((j["chest"] + j["belly"]) / 2, 0.1 * u, 0.2 * u, tilt, lk.jacket))
        blobs.append(_blob(j["chest"], 0.17 * u * lk.stocky, 0.1 * u, tilt, lk.jacket))
    for s in "LR":  # sleeves to the elbow, bare forearms, round hands
        blobs += [_bone(j["shoulder" + s], j["elbow" + s], 0.042 * u, lk.jacket),
                  _bone(j["elbow" + s], j["hand" + s], 0.032 * u, lk.skin),
                  _blob(j["hand" + s], 0.035 * u, 0.035 * u, 0.0, lk.skin)]
    blobs.append(_bone(j["neck"], j["head"], 0.035 * u, lk.skin))
    if app.face_visible:
        blobs.append(_blob(j["head"], 0.085 * u, 0.105 * u, tilt, lk.skin))
        blobs.append(_blob(j["head"] + (j["head"] - j["neck"]) * 0.55, 0.085 * u, 0.05 * u, tilt, lk.hair))  # hair on top
        if lk.beard:
            blobs.append(_blob(j["head"] + (j["neck"] - j["head"]) * 0.45, 0.07 * u, 0.045 * u, tilt, lk.hair * 0.8))
        for s in "LR":
            blobs.append(_blob(j["eye" + s], max(0.016 * u, 0.6), max(0.012 * u, 0.5), tilt, (250, 250, 250)))
            blobs.append(_blob(j["eye" + s], max(0.008 * u, 0.45), max(0.008 * u, 0.45), tilt, (20, 30, 60)))
    else:  # a full-face helmet with a dark visor
        blobs.append(_blob(j["head"], 0.1 * u, 0.115 * u, tilt, lk.helmet))
        blobs.append(_blob((j["eyeL"] + j["eyeR"]) / 2, 0.08 * u, 0.03 * u, tilt, (60, 80, 100)))
    return blobs


def paint_blobs(img: np.ndarray, blobs: list[Blob]) -> None:
    """Alpha-blend ellipses into ``img`` (T, H, W, 3 float32) in place, each inside its bounding box."""
    _, h, w, _ = img.shape
    for c, rx, ry, ang, colour in blobs:
        r = np.maximum(rx, ry)
        x0, y0 = np.maximum(np.floor((c - r[:, None]).min(0) - 1.5).astype(int), 0)
        x1, y1 = np.ceil((c + r[:, None]).max(0) + 1.5).astype(int)
        x1, y1 = min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            continue
        xx = (np.arange(x0, x1, dtype=np.float32) + 0.5)[None, None, :] - c[:, 0, None, None]
        yy = (np.arange(y0, y1, dtype=np.float32) + 0.5)[None, :, None] - c[:, 1, None, None]
        cos, sin = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
        a = (xx * cos + yy * sin) / rx[:, None, None]
        b = (-xx * sin + yy * cos) / ry[:, None, None]
        dist = (np.sqrt(a * a + b * b) - 1.0) * np.minimum(rx, ry)[:, None, None]  # ~pixels outside the rim
        alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
        region = img[:, y0:y1, x0:x1]
        region += alpha * (colour - region)


# --------------------------------------------------------------------------- scene, light, camera


def scene(rng: np.random.Generator, outdoor: bool, h: int, w: int) -> np.ndarray:
    """A static scene (h, w, 3 float32), wider than the frame so that the camera can pan over it."""
    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h * np.ones((1, w), np.float32)
    x = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / h * np.ones((h, 1), np.float32)  # in frame heights
    if outdoor:  # a street: sky, a row of buildings with windows, pavement and road
        top, bottom = [(np.array(a, np.float32), np.array(b, np.float32)) for a, b in (
            ((250, 170, 110), (120, 90, 150)), ((190, 195, 205), (150, 155, 170)), ((60, 170, 200), (200, 230, 240)))
        ][rng.integers(3)]
        img = top + (y / 0.6)[..., None] * (bottom - top)
        base = rng.uniform(0.55, 0.65)
        pos = 0.0
        while pos < x.max():
            bw, top_y = rng.uniform(0.15, 0.35), rng.uniform(0.1, 0.4)
            colour = np.array([(120, 110, 100), (90, 95, 110), (150, 120, 90), (70, 70, 75)], np.float32)[rng.integers(4)]
            inside = (x >= pos) & (x < pos + bw) & (y >= top_y) & (y < base)
            img = np.where(inside[..., None], colour, img)
            lit = rng.random()
            win = inside & (((x - pos) * 14 % 1.0) < 0.45) & (((y - top_y) * 16 % 1.0) < 0.5) & (y < base - 0.03)
            img = np.where(win[..., None], np.array((240, 220, 130) if lit < 0.5 else (40, 50, 60), np.float32), img)
            pos += bw + rng.uniform(0.0, 0.05)
        pavement = (y >= base) & (y < base + 0.12)
        img = np.where(pavement[..., None], np.array((165, 160, 150), np.float32), img)
        road = y >= base + 0.12
        lane = road & (np.abs(y - (base + 0.3)) < 0.012) & ((x * 4 % 1.0) < 0.5)
        img = np.where(road[..., None], np.array((70, 72, 76), np.float32), img)
        img = np.where(lane[..., None], np.array((235, 235, 220), np.float32), img)
    else:  # an office: a plain wall with a window and a door, a tiled floor
        wall = np.array([(225, 215, 190), (190, 210, 200), (215, 195, 205), (200, 200, 210)], np.float32)[rng.integers(4)]
        base = rng.uniform(0.55, 0.68)
        img = wall * (0.9 + 0.15 * (1 - y))[..., None]
        wx = rng.uniform(0.1, max(0.2, x.max() - 0.5))
        window = (x > wx) & (x < wx + 0.35) & (y > 0.12) & (y < base - 0.15)
        img = np.where(window[..., None], np.array((170, 210, 245), np.float32), img)
        frame = window & ((np.abs(x - wx - 0.175) < 0.01) | (np.abs(y - (0.12 + base - 0.15) / 2) < 0.01))
        img = np.where(frame[..., None], np.array((250, 250, 250), np.float32), img)
        dx = (wx + 0.6) % max(x.max() - 0.2, 0.3)
        door = (x > dx) & (x < dx + 0.2) & (y > 0.1) & (y < base)
        img = np.where(door[..., None], np.array((110, 70, 45), np.float32), img)
        t1, t2 = np.array([(200, 200, 200), (80, 80, 90)], np.float32), np.array([(180, 150, 110), (120, 90, 60)], np.float32)
        tiles = (t1, t2)[rng.integers(2)]
        size = rng.uniform(0.08, 0.14)
        checker = ((np.floor(x / size) + np.floor((y - base) / (size * 0.6))) % 2).astype(int)
        img = np.where((y >= base)[..., None], tiles[checker], img)
        img = np.where((np.abs(y - base) < 0.012)[..., None], np.array((60, 50, 45), np.float32), img)
    return img.astype(np.float32)


@dataclass(frozen=True)
class Camera:
    """Per-video camera and light: a slow pan, side light, vignette, drifting exposure."""

    ground_x: float  # pixels in the frame
    ground_y: float
    scale: float
    margin: int  # scene columns on each side the pan can reach
    pan_amp: float  # pixels
    pan_period: float  # seconds
    pan_phase: float
    light_side: float  # -1..1: where the light comes from
    warmth: np.ndarray  # (3,) colour temperature gain
    drift: float  # amplitude of the slow exposure drift
    noise: float

    @staticmethod
    def sample(rng: np.random.Generator, h: int, w: int, app: Appearance) -> Camera:
        margin = max(2, int(np.ceil(0.08 * w)))
        warm = rng.uniform(-1, 1)
        return Camera(
            ground_x=w * rng.uniform(0.4, 0.6), ground_y=h * rng.uniform(0.84, 0.92),
            scale=h * rng.uniform(0.5, 0.6) * app.height, margin=margin,
            pan_amp=float(rng.uniform(0.3, 1.0) * margin), pan_period=float(rng.uniform(3.0, 6.0)),
            pan_phase=float(rng.uniform(0, 2 * np.pi)), light_side=float(rng.uniform(-1, 1)),
            warmth=np.array([1 + 0.08 * warm, 1.0, 1 - 0.08 * warm], np.float32),
            drift=float(rng.uniform(0.02, 0.07)), noise=float(rng.uniform(1.0, 2.5)),
        )

    def pan(self, t: np.ndarray) -> np.ndarray:
        return self.pan_amp * np.sin(2 * np.pi * t / self.pan_period + self.pan_phase)


def _thrown_bag(rng: np.random.Generator, obj: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Path (n, 2) and spin (n,) of a large bag tossed once across the frame on a high arc, spinning,
    during the frames flagged in ``obj``."""
    u = np.clip((np.cumsum(obj) - 1) / max(int(obj.sum()) - 1, 1), 0.0, 1.0)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    x = w / 2 + direction * (u - 0.5) * 1.2 * w
    y = h * (0.7 - rng.uniform(0.3, 0.45) * np.sin(np.pi * u))
    return np.stack([x, y], -1).astype(np.float32), (6.0 * np.pi * u).astype(np.float32)


def render_urban(item: Item, cfg, pose: Pose, obj: np.ndarray | None, person_mask: np.ndarray | None = None
                 ) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3) of ``item`` in the urban style (cfg: SyntheticConfig), given its motion
    (``pose``) and the per-frame flags of an 'object' anomaly (``obj``, or None). ``person_mask`` (T, H, W)
    bool, when given, receives the figure's extent per frame (painted without ``rng``: same frames)."""
    rng = np.random.default_rng([*item.seed, 0x0B5E])
    h, w = frame_size(cfg.resolution)
    fps = cfg.fps
    cam = Camera.sample(rng, h, w, item.app)
    bg = scene(rng, item.outdoor, h, w + 2 * cam.margin)
    lk = look(item.app, item.seed)
    n = len(pose["x"])
    t = np.arange(n, dtype=np.float32) / fps
    shift = cam.pan(t) if item.row["media"] == "video" else np.zeros(n, np.float32)
    joints = {k: np.stack([cam.ground_x + cam.scale * v[:, 0] - shift, cam.ground_y + cam.scale * (v[:, 1] - 0.4)], -1)
              .astype(np.float32) for k, v in figure_joints(pose, item.app, lk.stocky).items()}
    blobs = figure_blobs(joints, item.app, lk, cam.scale)
    bag = _thrown_bag(rng, obj, h, w) if obj is not None and obj.any() else None
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    light = (1 + 0.35 * cam.light_side * xs)[None, :] * (1 - 0.5 * (xs[None, :] ** 2 + ys[:, None] ** 2))
    exposure = 1 + cam.drift * np.sin(2 * np.pi * t / 4.0 + cam.pan_phase)
    out = np.empty((n, h, w, 3), np.uint8)
    for lo in range(0, n, 32):
        sl = slice(lo, min(n, lo + 32))
        cols = cam.margin + np.rint(shift[sl]).astype(int)
        img = np.stack([bg[:, c:c + w] for c in cols])
        paint_blobs(img, [(c[sl], rx[sl], ry[sl], a[sl], col) for c, rx, ry, a, col in blobs])
        if person_mask is not None:
            cover = np.zeros((sl.stop - lo, h, w, 1), np.float32)
            paint_blobs(cover, [(c[sl], rx[sl], ry[sl], a[sl], np.ones(1, np.float32)) for c, rx, ry, a, _ in blobs])
            person_mask[sl] = cover[..., 0] > 0
        if bag is not None:  # parked far off-frame outside the anomaly
            centre = np.where(obj[sl, None], bag[0][sl], np.float32(-10 * w))
            paint_blobs(img, [_blob(centre, 0.22 * h, 0.14 * h, bag[1][sl], (240, 110, 20))])
        img = img * (light[None, ..., None] * exposure[sl, None, None, None]) * cam.warmth
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cam.noise)
        out[sl] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out
