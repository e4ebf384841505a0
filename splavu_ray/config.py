"""Typed run configuration: YAML files + dotted ``key=value`` overrides, validated before any work.

One root model (:class:`Config`) grouped by concern (data, backbone, adapter, loss, optim, ...).
Every model forbids unknown keys, so a typo fails with the key's name and the keys allowed there.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"


class ConfigError(ValueError):
    """A config file, key or value is not acceptable. The message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class SyntheticConfig(_Section):
    """The built-in procedural privacy dataset (see splavu_ray.data.synthetic)."""

    seed: int = 0
    domain: Literal["studio", "urban"] = Field(
        "studio", description="visual style: 'studio' (the default; every recipe was tuned on it) or 'urban' (a "
        "second renderer with the same labels, held out: docs/synthetic.md, 'Domains')",
    )
    resolution: int = Field(64, ge=32, le=256, description="frame side in pixels")
    num_frames: int = Field(32, ge=16, description="frames per trimmed video")
    fps: int = Field(16, ge=1)
    videos_per_split: dict[str, int] = Field(
        default_factory=lambda: {"pretrain": 240, "train": 320, "val": 160, "test": 240},
        description="trimmed action videos per split",
    )
    privacy_images: dict[str, int] = Field(
        default_factory=lambda: {"train": 480, "test": 240},
        description="still images of the privacy split (the VISPR analogue)",
    )
    untrimmed_videos: dict[str, int] = Field(
        default_factory=lambda: {"train": 96, "test": 96},
        description="untrimmed videos per split, for each of the THUMOS analogue (tad_*) and the UCF-Crime "
        "analogue (anomaly_*)",
    )
    bias: float = Field(0.0, ge=0.0, le=1.0, description="strength of the appearance->action shortcut (bias protocol)")


class PixelConfig(_Section):
    """data.pixel: a pixel-level baseline applied to every decoded frame before the frozen encoder (the pixel
    baselines of ``python -m splavu_ray.evaluate baselines=[...]``; splavu_ray.data.pixel_ops). Part of the
    feature store's identity, so each transform has a store of its own; feature extraction only (cached
    training and evaluation read it, online training does not)."""

    transform: Literal["downsample2", "downsample4", "blur", "pixelate", "blacken", "learned"] | None = Field(
        None, description="None = the frames as decoded; blacken = the person region black (needs the "
        "manifest's person_mask column, splavu_ray.data.person_masks); learned = a trained pixel anonymizer "
        "f_P (data.pixel.anonymizer; splavu_ray.models.pixel_anonymizer)")
    anonymizer: str | None = Field(None, description="transform=learned: the f_P export (a folder with "
                                   "pixel_anonymizer.safetensors/.json, e.g. outputs/pixel_unet/best_pixel_anonymizer); "
                                   "its weights' sha256 is part of the feature store's identity")
    blur_sigma: float = Field(0.03, gt=0, le=1, description="blur: Gaussian sigma as a fraction of the short side")
    pixelate_blocks: int = Field(8, ge=1, description="pixelate: mosaic blocks across the short side")

    @field_validator("anonymizer")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:  # Ray's workers run in other working directories
        return os.path.abspath(os.path.expanduser(path)) if path else path

    @model_validator(mode="after")
    def _check_learned(self) -> "PixelConfig":
        if (self.transform == "learned") != (self.anonymizer is not None):
            raise ValueError("data.pixel.transform=learned and data.pixel.anonymizer=PATH (a pixel anonymizer "
                             "export) go together: set both, or neither")
        return self


class DataConfig(_Section):
    dataset: str = Field("synthetic", description="'synthetic' (built-in) or a path/URI of a Parquet manifest")
    privacy_manifest: str | None = Field(None, description="manifest of the privacy split; defaults to the built-in one")
    cache_dir: str = Field("~/.cache/splavu_ray", description="where generated data and feature stores live")
    clip_len: int = Field(16, ge=1, description="frames per clip")
    min_frames: int | None = Field(None, ge=1, description="videos with fewer frames are rejected as too_short; "
                                   "longer ones shorter than a clip are padded with their last frame and counted "
                                   "as padded (None = half a clip)")
    frame_stride: int = Field(1, ge=1)
    num_eval_clips: int = Field(5, ge=1, description="evenly spaced clips per test video")
    num_static_frames: int = Field(10, ge=2, description="evenly spaced frames per video for static clips")
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    privacy_train_split: str = Field("privacy_train", description="split of the privacy manifest the attacker trains on")
    privacy_test_split: str = Field("privacy_test", description="split of the privacy manifest the attacker is scored on")
    untrimmed_splits: list[str] = Field(
        default_factory=lambda: ["tad_train", "tad_test", "anomaly_train", "anomaly_test"],
        description="splits whose videos are untrimmed (embedded as sequential windows); rows with "
        "action segments or anomaly=True always are",
    )
    skip_feature_splits: list[str] = Field(
        default_factory=lambda: ["pretrain"],
        description="manifest splits the feature store never embeds (the built-in data's 'pretrain' split "
        "only trains the demo encoder)",
    )
    decode_workers: int = Field(2, ge=1, description="max actors decoding clips in Ray Data")
    decode_batch_size: int = Field(4, ge=1, description="videos per map_batches call")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    pixel: PixelConfig = Field(default_factory=PixelConfig)


class BackboneConfig(_Section):
    kind: Literal["vjepa2", "videomae", "i3d", "vjepa1"] = Field(
        "vjepa2", description="vjepa2 / videomae: transformers models; i3d: Inflated 3D ConvNet (RGB, Mixed_5c); "
        "vjepa1: the V-JEPA v1 ViT (the paper's V-JEPA-H rows)")
    source: str = Field(
        "builtin:tiny-vjepa2",
        description="'builtin:tiny-vjepa2' (pretrained demo encoder shipped with the package), "
        "'random:tiny' (random-initialised tiny preset), a Hugging Face hub id, a local folder, or an s3:// / "
        "gs:// folder (copied once per node into a local cache); "
        "kind i3d / vjepa1: 'random:tiny' or weights written by python -m splavu_ray.models.convert_i3d / "
        "convert_vjepa1 (a .safetensors file or a folder)",
    )
    pooling: Literal["mean", "attentive"] = Field("mean", description="attentive needs trained pooler weights (the built-in encoder ships them)")
    pooler_path: str | None = Field(None, description="safetensors weights of a trained attentive pooler")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU")
    image_size: int | None = Field(None, ge=16, description="input side; None = the model's own")
    batch_size: int = Field(8, ge=1, description="clips per forward pass during feature extraction")

    @model_validator(mode="after")
    def _check_local_kind(self) -> "BackboneConfig":
        if self.kind in ("i3d", "vjepa1") and self.source.startswith("builtin:tiny-vjepa2"):
            raise ValueError(f"backbone.kind={self.kind} needs its own weights: set backbone.source to 'random:tiny' "
                             f"or to the output of python -m splavu_ray.models.convert_{self.kind} (docs/method.md)")
        if self.kind in ("i3d", "vjepa1") and self.pooling == "attentive":
            raise ValueError(f"backbone.pooling=attentive is available for kind=vjepa2 only; kind={self.kind} "
                             "uses pooling=mean")
        return self


class AdapterConfig(_Section):
    kind: Literal["transformer", "attention", "mlp"] = Field(
        "transformer",
        description="transformer: pre-norm attention + feed-forward blocks (default); "
        "attention: the paper's attention-only blocks; mlp: ablation",
    )
    layers: int = Field(3, ge=1)
    heads: int = Field(8, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class PixelUNetConfig(_Section):
    """pixel_unet: the learned pixel anonymizer f_P that ``train.anonymizer=pixel_unet`` trains
    (splavu_ray.models.pixel_anonymizer; docs/method.md, "A learned pixel anonymizer f_P")."""

    width: int = Field(16, ge=1, le=256, description="U-Net channels at full resolution (doubled per level)")
    depth: int = Field(2, ge=1, le=5, description="U-Net levels (poolings by 2)")


class TADTaskConfig(_Section):
    """Temporal action detection (eval.tad): the TriDet-style head and its loss (splavu_ray.models.heads,
    splavu_ray.objectives.detection), shared by co-training (loss.w_tad > 0) and the evaluation task."""

    train_split: str = Field("tad_train", description="untrimmed split the detector trains on (THUMOS14: 'train', its validation videos)")
    test_split: str = Field("tad_test", description="untrimmed split the detector is scored on (THUMOS14: 'test')")
    hidden: int = Field(128, ge=8, description="channels of the temporal pyramid")
    levels: int = Field(3, ge=1, le=8, description="pyramid levels (stride 1, 2, 4, ...)")
    centre_radius: float = Field(1.5, gt=0, description="centre sampling radius, in strides of a level")
    max_windows: int = Field(256, ge=4, description="training crop of long sequences (windows)")
    epochs: int = Field(60, ge=1, description="epochs of the post-hoc detector (evaluation)")
    lr: float = Field(1e-3, gt=0, description="lr of the post-hoc detector")
    nms: Literal["soft", "hard"] = Field("soft", description="per-class NMS at inference: 'soft' = Gaussian "
                                         "Soft-NMS (ActionFormer/TriDet on THUMOS14), 'hard' = greedy NMS at nms_iou")
    nms_sigma: float = Field(0.5, gt=0, description="Soft-NMS: score *= exp(-tIoU^2 / nms_sigma)")
    nms_min_score: float = Field(0.001, ge=0, lt=1, description="Soft-NMS: detections whose decayed score falls "
                                 "below this are dropped")
    nms_iou: float = Field(0.5, gt=0, le=1, description="hard NMS threshold (nms=hard); Soft-NMS does not use it")
    max_detections: int = Field(100, ge=1, description="detections kept per video")


class AnomalyTaskConfig(_Section):
    """Weakly supervised anomaly detection (eval.anomaly): the MGFN-style head and its loss, shared by
    co-training (loss.w_ad > 0) and the evaluation task; video labels only."""

    train_split: str = Field("anomaly_train", description="split with video-level labels (UCF-Crime: 'train')")
    test_split: str = Field("anomaly_test", description="split with frame-level anomaly segments (UCF-Crime: 'test')")
    hidden: int = Field(128, ge=8)
    topk: int = Field(3, ge=1, description="windows per video pooled into its video score and magnitude")
    margin: float = Field(1.0, gt=0, description="abnormal-normal distance of the magnitude contrastive term")
    w_smooth: float = Field(8e-4, ge=0, description="temporal smoothness weight (abnormal videos)")
    w_sparse: float = Field(8e-3, ge=0, description="sparsity weight (abnormal videos)")
    w_mc: float = Field(0.01, ge=0, description="feature-magnitude contrastive weight")
    max_windows: int = Field(256, ge=4, description="training crop of long sequences (windows)")
    epochs: int = Field(60, ge=1, description="epochs of the post-hoc detector (evaluation)")
    lr: float = Field(1e-3, gt=0)


class LossConfig(_Section):
    w_lc: float = Field(100.0, ge=0, description="latent consistency weight")
    w_t: float = Field(1.0, ge=0, description="utility (co-training) weight")
    w_b: float = Field(1.0, ge=0, description="budget privacy (NT-Xent) weight")
    w_ar: float = Field(1.0, ge=0, description="action recognition task weight inside L_T")
    w_tad: float = Field(0.0, ge=0, description="temporal action detection weight inside L_T (0 = task off)")
    w_ad: float = Field(0.0, ge=0, description="anomaly detection weight inside L_T (0 = task off)")
    temperature: float = Field(0.1, gt=0)
    tad_videos_per_step: int = Field(4, ge=1, description="untrimmed videos per rank per co-training step (TAD; "
                                     "the task itself is eval.tad)")
    ad_videos_per_step: int = Field(4, ge=2, description="untrimmed videos per rank per co-training step (anomaly, "
                                    "half normal; the task itself is eval.anomaly)")


class OptimConfig(_Section):
    lr: float = Field(1e-4, gt=0, description="learning rate at base_batch_size (linearly scaled)")
    base_batch_size: int = Field(512, ge=1)
    batch_size: int = Field(64, ge=2, description="global batch size (videos per step, all workers)")
    weight_decay: float = Field(0.05, ge=0)
    epochs: int = Field(30, ge=1)
    head_epochs: int = Field(10, ge=0, description="epochs training the heads on raw features first")
    head_lr_scale: float = Field(1.0, gt=0, description="lr multiplier of the task heads relative to f_A")
    warmup_epochs: float = Field(2.0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    min_lr_ratio: float = Field(0.01, ge=0, le=1)


class ScalingConfig(_Section):
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0)
    accelerator_type: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$", description="with use_gpu: the GPU model the workers (Train "
        "workers, feature-extraction actors) must run on, as Ray names it (A100, L4, H100, ...); the cluster yamls' "
        "worker types declare theirs (cluster/gpu.yaml), so the autoscaler starts the matching type. None = any GPU")

    @model_validator(mode="after")
    def _accelerator_needs_gpus(self):
        if self.accelerator_type and not self.use_gpu:
            raise ValueError("scaling.accelerator_type selects a GPU model: set scaling.use_gpu=true with it")
        return self


class DeepSpeedConfig(_Section):
    zero_stage: int = Field(2, ge=0, le=3)
    bf16: Literal["auto", "on", "off"] = Field("auto", description="auto = on with GPUs")
    single_worker: Literal["torch", "deepspeed"] = Field(
        "torch", description="what a run with ONE fp32 worker steps with: torch = plain AdamW + clipping, the same "
        "updates without starting a DeepSpeed engine (nothing to shard on one worker); deepspeed = the engine anyway")


class TrainConfig(_Section):
    mode: Literal["cached", "online"] = Field("cached", description="cached: feature store; online: decode in the loop")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    report_every: int | None = Field(None, ge=1, description="epochs between metric reports to Ray Train besides "
                                     "the checkpoints (each waits for the controller's poll); None = with each "
                                     "checkpoint only. Every epoch's metrics stay in the run's history either way")
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0, description="worker failures a run survives")
    static_pairs: int = Field(2, ge=2, le=2, description="static clips drawn per video per step")
    anonymizer: Literal["adapter", "pixel_unet"] = Field(
        "adapter", description="what trains: adapter = f_A on features (SPLAVU); pixel_unet = a pixel anonymizer "
        "f_P on frames (the U-Net of section pixel_unet), through the frozen encoder, with the same loss terms; "
        "needs train.mode=online and is evaluated like a pixel baseline (docs/method.md, section 9)")
    select: Literal["val_top1", "last"] = Field(
        "val_top1", description="the adapter a run exports as best_adapter: val_top1 = the joint epoch with the best "
        "validation action top-1 (the paper's rule); last = the final epoch's (for small validation sets, where "
        "validation top-1 is too noisy to pick an epoch by)")


class PrivacyEvalConfig(_Section):
    """eval.privacy: attackers trained WITH labels on static-clip features (the headline is the worst case)."""

    attackers: list[Literal["mlp", "linear", "bank"]] = Field(
        default_factory=lambda: ["mlp", "linear", "bank"],
        description="privacy attackers; the worst case over all is the headline. mlp is the paper's and always runs",
    )
    attacker_epochs: int = Field(100, ge=1, description="epochs of every attacker (paper: 100)")
    attacker_lr: float = Field(1e-3, gt=0)
    attacker_hidden: int | None = Field(None, ge=1, description="None = feature width, as in the paper")
    bank_kind: Literal["mlp", "linear"] = Field("mlp", description="architecture of each head of the attacker bank")
    bank_lrs: list[float] = Field(default_factory=lambda: [1e-4, 1e-3, 1e-2], min_length=1,
                                  description="bank: one head per (lr, weight decay) pair")
    bank_weight_decays: list[float] = Field(default_factory=lambda: [0.0, 0.01, 0.1], min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "PrivacyEvalConfig":
        if "mlp" not in self.attackers:
            raise ValueError("eval.privacy.attackers must include 'mlp' (the paper's attacker gives "
                             "privacy.cmap_raw/anonymized)")
        if any(lr <= 0 for lr in self.bank_lrs) or any(wd < 0 for wd in self.bank_weight_decays):
            raise ValueError("eval.privacy.bank_lrs must be > 0 and eval.privacy.bank_weight_decays >= 0")
        return self


class ActionEvalConfig(_Section):
    """eval.action: the linear action probe (also used by the bias protocols)."""

    probe: Literal["logreg", "sgd"] = Field(
        "logreg", description="linear action probe: logreg = L2 logistic regression solved to convergence "
        "(deterministic); sgd = a Linear layer trained with AdamW for probe_epochs")
    probe_c: float | None = Field(None, gt=0, description="logreg: inverse L2 strength; None = chosen from "
                                  "probe_c_grid by 3-fold cross-validation over the training videos")
    probe_c_grid: list[float] = Field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0], min_length=1)
    probe_epochs: int = Field(100, ge=1, description="sgd probe: epochs")
    probe_lr: float = Field(1e-3, gt=0, description="sgd probe: AdamW learning rate")

    @model_validator(mode="after")
    def _check(self) -> "ActionEvalConfig":
        if any(c <= 0 for c in self.probe_c_grid):
            raise ValueError(f"eval.action.probe_c_grid values must be > 0, got {self.probe_c_grid}")
        return self


class BiasEvalConfig(_Section):
    """eval.bias: NTU-Bias-F / -M and the natural protocol (gender-presentation bias of the action probe)."""

    manifest: str | None = Field(None, description="manifest with subject ids and gender (e.g. NTU RGB+D 60); "
                                 "None = the main dataset")
    train_split: str = "train"
    test_split: str = "test"
    flipped_action: str | None = Field(None, description="None: 'brushing hair' if the vocabulary has it, else "
                                       "its first action")
    p: float = Field(0.95, ge=0.5, lt=1.0, description="P(majority group | action) in the NTU-Bias training split")


class ReidEvalConfig(_Section):
    """eval.reid: subject re-identification by retrieval (the temporal private attribute)."""

    manifest: str | None = Field(None, description="manifest with subject ids for re-identification; None = main")
    split: str = Field("test", description="split whose videos form the gallery and the probes")


class ToyotaBiasEvalConfig(_Section):
    """eval.toyota_bias: the natural gender-presentation bias protocol on Toyota Smarthome's cross-subject split."""

    manifest: str | None = Field(None, description="Toyota Smarthome manifest with genders (python -m "
                                 "splavu_ray.data.builders toyota_smarthome); the task runs only when it is set")
    train_split: str = Field("train", description="split the action probe trains on (the CS training subjects)")
    test_split: str = Field("test", description="split the per-group accuracy is measured on (the CS test subjects)")


class GaitEvalConfig(_Section):
    """eval.gait: CASIA-B gait recognition of unseen subjects by retrieval (the temporal private attribute)."""

    manifest: str | None = Field(None, description="CASIA-B manifest (python -m splavu_ray.data.builders casia_b); "
                                 "the task runs only when it is set")
    split: str = Field("test", description="split of the unseen subjects (the builder's: 075-124)")


class InversionEvalConfig(_Section):
    """eval.inversion: the feature-inversion attack (docs/privacy.md). A decoder trained on the privacy train
    split's (static feature, frame) pairs reconstructs the privacy test frames from their features; results in
    results.json's ``reconstruction`` section (the task's name in ``eval.tasks``)."""

    enabled: bool = Field(False, description="run the attack (also on when eval.tasks names 'reconstruction'); off "
                          "by default: it decodes the privacy images and trains two decoders")
    epochs: int = Field(30, ge=1, description="decoder training epochs")
    lr: float = Field(2e-3, gt=0, description="decoder AdamW learning rate (cosine schedule)")
    width: int = Field(64, ge=16, description="channels of the decoder's first 4x4 grid (halved per doubling)")
    batch_size: int = Field(32, ge=1, description="decoder mini-batch")
    grid_images: int = Field(8, ge=0, description="test images shown in inversion.png (0 = no figure)")


class BootstrapConfig(_Section):
    """eval.bootstrap: the uncertainty of every headline number (splavu_ray.metrics.bootstrap; docs/method.md,
    "Chance references and intervals")."""

    resamples: int = Field(1000, ge=0, description="percentile-bootstrap resamples of the test videos (images for "
                           "privacy); 0 = no intervals")
    seed: int = Field(0, ge=0, description="seed of the resampling (the same resamples score raw and anonymized)")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="coverage of every interval")
    seeds: int = Field(1, ge=1, le=20, description="training seeds (seed, seed+1, ...) of every attacker, detector "
                       "and anomaly head (and of the action probe when eval.action.probe=sgd; the logreg probe is "
                       "deterministic): the headline is their mean, the interval pools the resamples of all seeds")
    chance_draws: int = Field(10, ge=1, description="random detectors averaged for TAD's chance mAP")

    @model_validator(mode="after")
    def _check(self) -> "BootstrapConfig":
        tail = (1.0 - self.confidence) / 2.0
        if self.resamples and self.resamples * tail < 1.0:
            raise ValueError(f"eval.bootstrap.resamples={self.resamples} leaves no resample in the tails of a "
                             f"{self.confidence:g} interval; use at least {math.ceil(1.0 / tail)} (or 0 for none)")
        return self


class EvalConfig(_Section):
    """Evaluation of raw vs anonymized features (splavu_ray.evaluation; README: Evaluation). One section per
    task; the settings every task shares stay here."""

    tasks: list[Literal["privacy", "action", "bias", "reid", "tad", "anomaly", "reconstruction", "toyota_bias",
                       "gait"]] | None = Field(
        None, description="None: privacy and action always; bias, reid, tad and anomaly when the data has the labels, "
        "toyota_bias and gait when their manifest is set (skipped with the reason recorded otherwise); a list: "
        "exactly those, missing labels are an error",
    )
    privacy: PrivacyEvalConfig = Field(default_factory=PrivacyEvalConfig)
    action: ActionEvalConfig = Field(default_factory=ActionEvalConfig)
    bias: BiasEvalConfig = Field(default_factory=BiasEvalConfig)
    reid: ReidEvalConfig = Field(default_factory=ReidEvalConfig)
    toyota_bias: ToyotaBiasEvalConfig = Field(default_factory=ToyotaBiasEvalConfig)
    gait: GaitEvalConfig = Field(default_factory=GaitEvalConfig)
    tad: TADTaskConfig = Field(default_factory=TADTaskConfig)
    anomaly: AnomalyTaskConfig = Field(default_factory=AnomalyTaskConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    inversion: InversionEvalConfig = Field(default_factory=InversionEvalConfig)
    baselines: list[Literal["downsample2", "downsample4", "blur", "pixelate", "blacken"]] = Field(
        default_factory=list, description="pixel-level baselines python -m splavu_ray.evaluate scores next to the "
        "adapter (also given as baselines=[...]): each transforms the frames before the encoder (data.pixel), "
        "gets a feature store of its own and runs every task; rows of baselines.md")
    pixel_anonymizer: str | None = Field(
        None, description="a learned pixel anonymizer export (f_P, train.anonymizer=pixel_unet) python -m "
        "splavu_ray.evaluate scores as one more pixel baseline row, 'learned' (also given as pixel_anonymizer=PATH)")
    score_on: Literal["test", "val"] = Field(
        "test", description="test: the reported protocol; val: a selection split drawn from train and val only "
        "(what sweeps score every trial on; splavu_ray.evaluation.selection)")
    selection_holdout: float = Field(0.25, gt=0.0, lt=1.0, description="with score_on=val, the share of a "
                                     "train-only split (privacy, TAD, anomaly) held out to score on")
    plots: bool = Field(True, description="write the PNG figures and report.html beside results.json")
    batch_size: int = Field(64, ge=1, description="mini-batch of every probe and attacker (raise it for large datasets)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where probes train; auto = cuda when present")
    cpu_threads: int | None = Field(1, ge=1, description="torch threads while probes train on CPU (None = torch's "
                                    "default): small probes are fastest on one, and extra threads slow down sharply "
                                    "on a busy machine")


class RayConfig(_Section):
    address: str | None = Field(None, description="None: join RAY_ADDRESS if set, else start a local Ray")
    storage_path: str | None = Field(None, description="Ray Train storage (local dir, s3://, gs://); None = output_dir/ray")
    # Each ray.train.report waits until the Train controller polls the workers (a queue of one), so
    # Ray's default poll of 2 s caps a run at one epoch per 2 s, whatever the epoch costs.
    report_poll_s: float = Field(0.25, gt=0, le=60, description="Ray Train controller poll interval "
                                 "(RAY_TRAIN_HEALTH_CHECK_INTERVAL_S; the environment variable wins when set)")


# URI schemes MLflow's tracking client accepts (besides http/https): local stores and SQLAlchemy databases.
_MLFLOW_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")


class TrackingConfig(_Section):
    """Experiment tracking (splavu_ray.tracking; docs/tracking.md). Off unless mlflow_uri is set."""

    mlflow_uri: str | None = Field(None, description="MLflow tracking URI: a server (http://127.0.0.1:5000) or a "
                                   "store (sqlite:////abs/mlflow.db, a database URL; file:/abs/mlruns where MLflow "
                                   "still allows it); None = no MLflow")
    experiment: str = Field("splavu_ray", description="MLflow experiment the runs go to (created when missing)")
    tensorboard: bool = Field(False, description="also write the per-epoch metrics as TensorBoard event files "
                              "under output_dir/tensorboard (rank 0's node)")

    @field_validator("mlflow_uri")
    @classmethod
    def _check_uri(cls, uri: str | None) -> str | None:
        if uri is None:
            return uri
        scheme = uri.split(":", 1)[0].lower()  # "databricks" has no colon
        if not uri.strip() or any(c.isspace() for c in uri) or scheme.split("+")[0] not in _MLFLOW_SCHEMES:
            raise ValueError("must be an MLflow tracking URI such as http://127.0.0.1:5000 or "
                             "sqlite:////abs/path/mlflow.db; leave it unset (null) to turn tracking off")
        if scheme in ("http", "https") and not urlsplit(uri).netloc:
            raise ValueError("names no host (e.g. http://127.0.0.1:5000)")
        rest = uri.partition(":")[2]
        absolute = {"file": rest.removeprefix("//").startswith("/"), "sqlite": rest.startswith("////")}
        if not absolute.get(scheme, True):  # Ray workers run in other working directories
            raise ValueError("a file: or sqlite: store needs an absolute path (file:/abs/mlruns, "
                             "sqlite:////abs/mlflow.db)")
        return uri

    @field_validator("experiment")
    @classmethod
    def _check_experiment(cls, name: str) -> str:
        if not name.strip() or name != name.strip():
            raise ValueError("must be a non-empty MLflow experiment name without surrounding spaces")
        return name


class Config(_Section):
    run_name: str = Field("splavu-demo", pattern=r"^[A-Za-z0-9_.-]+$")
    output_dir: str = Field("outputs/splavu-demo", description="where results, configs and exports are written")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    adapter: AdapterConfig = Field(default_factory=AdapterConfig)
    pixel_unet: PixelUNetConfig = Field(default_factory=PixelUNetConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.train.anonymizer == "pixel_unet":
            bad = [msg for cond, msg in (
                (self.train.mode != "online", "train.mode=online (f_P sees frames; the feature store has none)"),
                (self.loss.w_tad > 0 or self.loss.w_ad > 0, "loss.w_tad=0 and loss.w_ad=0 (TAD / anomaly "
                 "co-training reads untrimmed videos from the feature store)"),
                (self.data.pixel.transform is not None, "data.pixel.transform unset (f_P takes the frames as "
                 "decoded)"),
                (self.tracking.mlflow_uri is not None, "tracking.mlflow_uri unset (MLflow tracks f_A runs only)"),
                (self.eval.score_on != "test", "eval.score_on=test (sweeps of f_P are not supported)")) if cond]
            if bad:
                raise ValueError("train.anonymizer=pixel_unet needs " + "; ".join(bad))
        if self.optim.batch_size % self.scaling.num_workers:
            raise ValueError(
                f"optim.batch_size ({self.optim.batch_size}) must be divisible by "
                f"scaling.num_workers ({self.scaling.num_workers})"
            )
        return self

    # -- convenience -------------------------------------------------------------------------

    @property
    def output_path(self) -> Path:
        return Path(os.path.expanduser(self.output_dir)).resolve()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the resolved config (YAML) to ``path`` (a run's ``RunFolder.config``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=3e-4", "adapter.kind=mlp"]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: value {raw!r} is not valid YAML ({exc})") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part!r} is set both as a value and a section")
        node[parts[-1]] = value
    return nested


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The section model that owns the field at ``loc`` (for listing allowed keys)."""
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            return model
    return model


def format_validation_error(exc: ValidationError, root: type[BaseModel] = None) -> str:
    root = root or Config
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if err["type"] == "extra_forbidden":
            owner = _model_at(root, loc[:-1])
            allowed = ", ".join(sorted(owner.model_fields)) if owner else "?"
            lines.append(f"unknown config key '{key}'; allowed here: {allowed}")
        else:
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"config key '{key}': {err['msg']}{got_s}")
    return "invalid config:\n  " + "\n  ".join(lines)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


# Keys that moved when each evaluation task got its own section (eval.<task>): old name -> new name.
# A config that still uses an old name fails before any work, naming the new key.
MOVED_KEYS: dict[str, str] = {
    **{f"eval.{k}": f"eval.privacy.{k}" for k in ("attackers", "attacker_epochs", "attacker_lr", "attacker_hidden",
                                                  "bank_kind", "bank_lrs", "bank_weight_decays")},
    **{f"eval.{k}": f"eval.action.{k}" for k in ("probe", "probe_c", "probe_c_grid", "probe_epochs", "probe_lr")},
    **{f"eval.bias_{k}": f"eval.bias.{k}" for k in ("manifest", "train_split", "test_split", "flipped_action", "p")},
    "eval.reid_manifest": "eval.reid.manifest", "eval.reid_split": "eval.reid.split",
    "loss.tad.videos_per_step": "loss.tad_videos_per_step", "loss.ad.videos_per_step": "loss.ad_videos_per_step",
    **{f"loss.tad.{k}": f"eval.tad.{k}" for k in TADTaskConfig.model_fields},
    **{f"loss.ad.{k}": f"eval.anomaly.{k}" for k in AnomalyTaskConfig.model_fields},
}


_MISSING = object()


def moved_keys(data: dict[str, Any]) -> list[str]:
    """Messages for every key of ``data`` (a Config dict) that now lives elsewhere."""
    found = []
    for old, new in MOVED_KEYS.items():
        node: Any = data
        for part in old.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            found.append(f"config key '{old}' has moved to '{new}'")
    loss = data.get("loss")
    for key, new in (("tad", "eval.tad"), ("ad", "eval.anomaly")):  # what is left of an old section
        if isinstance(loss, dict) and key in loss and not any(f"'loss.{key}." in m for m in found):
            found.append(f"config section 'loss.{key}' has moved to '{new}'")
    return found



def validate(data: dict[str, Any], model: type[BaseModel] = Config):
    if model is Config and (moved := moved_keys(data)):
        raise ConfigError("invalid config:\n  " + "\n  ".join(moved))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model)) from None


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load ``path`` (YAML; None = schema defaults, the built-in demo), apply overrides, validate."""
    data = read_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(list(overrides or [])))
    return validate(data)


def config_hash(cfg: BaseModel) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
