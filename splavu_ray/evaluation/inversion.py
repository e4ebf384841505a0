"""The feature-inversion attack: how much of the picture an attacker can rebuild from released features.

An adversary who holds (feature, frame) pairs of its own trains a decoder (splavu_ray.models.inverter) that
maps a static-clip feature back to the frame (the centre crop the encoder saw, at the encoder's input
resolution). Its own data here is the privacy TRAIN split (data.privacy_train_split: people and images f_A
never trained on); it is scored on the privacy TEST split. Two settings (docs/privacy.md):

- transfer: the decoder is trained on raw features and applied to raw and to anonymized features;
- adaptive: the attacker knows f_A, so it trains a second decoder on the anonymized features of its own
  data and applies it to anonymized features.

Reported, per view: PSNR and SSIM against the original frames (scikit-image), and the private-attribute
cMAP of the paper's MLP attacker trained on the frozen encoder's features of REAL frames (the raw static
features of the privacy train split), applied to the frozen encoder's features of the reconstructions.
The anonymized headline of each metric is its worse (more revealing) value over the two settings, as the
privacy task's is its worst attacker; ``worst_setting`` names the setting with the higher cMAP. With ``eval.plots`` a grid (original / from raw / from anonymized, both settings) is
written beside results.json as ``inversion.png``.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import probes
from ..config import Config
from ..data.decode import try_load_clips
from ..data.feature_store import FeatureSplit, FeatureStore
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, normalize
from ..metrics.classification import chance_cmap
from ..models.adapter import AnonymizingAdapter
from ..models.backbone import build_backbone
from ..models.inverter import fit_inverter, invert
from ..run_folder import RunFolder
from .privacy import PrivacyTask
from .report import TableColumn
from .task import EvalInputError, anonymize, fit_kw

GRID = "inversion.png"


def encoder_frames(rows: list[dict], cfg: Config, size: int) -> np.ndarray:
    """(N, size, size, 3) float32 in [0, 1]: the first static frame of each row, cropped as the encoder saw it
    (the feature store's decode: same frame indices, same eval resize and centre crop)."""
    d = cfg.data
    short = round(size * 256 / 224)
    out = []
    for row in rows:
        k = 1 if row.get("media") == "image" else d.num_static_frames
        dec = try_load_clips(row, mode="static", clip_len=d.clip_len, static_k=k, size=short)
        if not dec["ok"]:
            raise EvalInputError(f"inversion: cannot decode {row.get('uri')!r} ({dec['reason']}: {dec['detail']})")
        x = eval_transform(dec["static"][:1], size)[0]  # (3, S, S), ImageNet-normalised
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        out.append((x * std + mean).clamp(0, 1).permute(1, 2, 0).numpy())
    return np.stack(out).astype(np.float32)


@torch.no_grad()
def encode_frames(backbone, frames: np.ndarray, clip_len: int, batch: int) -> np.ndarray:
    """The frozen encoder's static-clip features of (N, S, S, 3) frames in [0, 1]: (N, d)."""
    out = []
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch])).permute(0, 3, 1, 2) * 255.0
        x = normalize(x).unsqueeze(1).expand(-1, clip_len, -1, -1, -1)
        out.append(backbone(x.to(next(backbone.parameters()).device)).float().cpu().numpy())
    return np.concatenate(out)


def image_quality(recon: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM over images in [0, 1] (scikit-image)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [peak_signal_noise_ratio(t, r, data_range=1.0) for r, t in zip(recon, target)]
    win = min(7, target.shape[1] - (1 - target.shape[1] % 2))  # odd, no larger than the image
    ssim = [structural_similarity(t, r, data_range=1.0, channel_axis=-1, win_size=win) for r, t in zip(recon, target)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), x.std(0) + 1e-6


def write_grid(path, original: np.ndarray, rows: dict[str, np.ndarray]) -> None:
    """A figure: one column per test image, one row per view (original first)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = {"original": original, **rows}
    n = len(original)
    fig, axes = plt.subplots(len(panels), n, figsize=(1.1 * n + 1.4, 1.15 * len(panels)), squeeze=False)
    for r, (label, imgs) in enumerate(panels.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(np.clip(imgs[c], 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("feature inversion on the privacy test split", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def inversion_section(cfg: Config, adapter: AnonymizingAdapter, train: FeatureSplit, test: FeatureSplit) -> dict:
    inv = cfg.eval.inversion
    kw = fit_kw(cfg)
    backbone = build_backbone(cfg.backbone, kw["device"], cfg.data.clip_len)
    size = backbone.image_size
    if backbone.embed_dim != train.dim:
        raise EvalInputError(f"inversion: backbone width {backbone.embed_dim} does not match the feature store's "
                             f"{train.dim}")
    frames_tr, frames_te = encoder_frames(train.rows, cfg, size), encoder_frames(test.rows, cfg, size)
    raw_tr, raw_te = train.first_static(), test.first_static()
    anon_tr, anon_te = anonymize(adapter, raw_tr), anonymize(adapter, raw_te)
    fit = {"epochs": inv.epochs, "lr": inv.lr, "width": inv.width, "batch_size": inv.batch_size, "seed": cfg.seed,
           "device": kw["device"]}

    # transfer: a decoder of raw features (the attacker does not know f_A)
    mu, sd = _stats(raw_tr)
    dec_raw, loss_raw = fit_inverter((raw_tr - mu) / sd, frames_tr, **fit)
    recon = {"raw": invert(dec_raw, (raw_te - mu) / sd), "transfer": invert(dec_raw, (anon_te - mu) / sd)}
    # adaptive: the attacker knows f_A and trains on anonymized features of its own data
    mu_a, sd_a = _stats(anon_tr)
    dec_anon, loss_anon = fit_inverter((anon_tr - mu_a) / sd_a, frames_tr, **fit)
    recon["adaptive"] = invert(dec_anon, (anon_te - mu_a) / sd_a)

    # the attribute attacker: the paper's MLP on the encoder's features of real frames
    names = list(train.attributes)
    ytr, yte = train.attribute_matrix(), test.attribute_matrix()
    pv = cfg.eval.privacy

    def attack(test_x: np.ndarray) -> probes.AttackResult:
        return probes.attack(raw_tr, ytr, test_x, yte, names, "mlp", pv.attacker_epochs, pv.attacker_lr,
                             hidden=pv.attacker_hidden, seed=cfg.seed, **kw)

    out: dict = {"setting": {"decoder_data": cfg.data.privacy_train_split, "scored_on": cfg.data.privacy_test_split,
                             "frame_size": size, "attacker": "paper MLP on frozen-encoder features of real frames "
                             f"({cfg.data.privacy_train_split})"},
                 "train_mse": {"raw": loss_raw["train_mse"], "adaptive": loss_anon["train_mse"]}}
    real = attack(raw_te)
    out["cmap_real"] = real.cmap
    for tag, images in recon.items():
        out[f"psnr_{tag}"], out[f"ssim_{tag}"] = image_quality(images, frames_te)
        res = attack(encode_frames(backbone, images, cfg.data.clip_len, cfg.backbone.batch_size))
        out[f"cmap_{tag}"], out[f"per_attribute_{tag}"] = res.cmap, res.per_attribute
    worst = max(("transfer", "adaptive"), key=lambda t: (out[f"cmap_{t}"], out[f"psnr_{t}"]))
    out["worst_setting"] = worst
    for key in ("psnr", "ssim", "cmap"):
        out[f"{key}_anonymized"] = max(out[f"{key}_transfer"], out[f"{key}_adaptive"])
    out["cmap_chance"] = chance_cmap(yte)
    out["sizes"] = {"train": len(train), "test": len(test)}
    if cfg.eval.plots and inv.grid_images:
        folder = RunFolder.of(cfg).make()
        n = min(inv.grid_images, len(frames_te))
        write_grid(folder.root / GRID, frames_te[:n], {"from raw": recon["raw"][:n],
                                                        "anonymized, transfer": recon["transfer"][:n],
                                                        "anonymized, adaptive": recon["adaptive"][:n]})
        out["grid"] = GRID
    return out


class InversionTask(PrivacyTask):
    """The privacy task's data and label checks; its own run."""

    name = "reconstruction"
    optional = True
    columns = (TableColumn("inversion PSNR dB", "reconstruction", "psnr", False, "privacy"),
               TableColumn("reconstruction attribute cMAP", "reconstruction", "cmap", False, "privacy"))

    def default_on(self, cfg: Config) -> bool:
        return cfg.eval.inversion.enabled

    def run(self, cfg: Config, adapter: AnonymizingAdapter, store: FeatureStore) -> dict:
        d = cfg.data
        return inversion_section(cfg, adapter, store.load(d.privacy_train_split), store.load(d.privacy_test_split))
