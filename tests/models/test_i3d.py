"""I3D behind the backbone interface: shapes, the public architecture's size, and the pytorch-i3d converter."""

import json

import pytest
import torch

from splavu_ray.config import BackboneConfig, ConfigError, load_config
from splavu_ray.models.backbone import (
    BackboneError,
    build_backbone,
    describe,
    save_encoder,
)
from splavu_ray.models.convert_i3d import main as convert_main
from splavu_ray.models.convert_i3d import public_to_ours
from splavu_ray.models.i3d import PRESETS, I3DEncoder
from splavu_ray.training.preflight import check_inputs

# pytorch-i3d's InceptionI3d state-dict layout, written out from its module names (not from our code)
PUBLIC_UNITS = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"] + [
    f"Mixed_{m}.{b}" for m in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")
    for b in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")]


def public_state_dict(model: I3DEncoder, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the public names, shaped like ``model`` (plus the classifier and BN counters)."""
    g = torch.Generator().manual_seed(seed)
    own = model.state_dict()
    out = {}
    for unit in PUBLIC_UNITS:
        for leaf in ("conv3d.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
            key = f"{unit}.{leaf}"
            shape = own[public_to_ours(key)].shape
            t = torch.randn(shape, generator=g) * (0.1 if leaf.startswith("conv3d") else 0.2)
            out[key] = t.abs() + 0.5 if leaf == "bn.running_var" else (t + 1 if leaf == "bn.weight" else t)
        out[f"{unit}.bn.num_batches_tracked"] = torch.tensor(7)
    out["logits.conv3d.weight"] = torch.randn(400, model.config.hidden_size, 1, 1, 1, generator=g)
    out["logits.conv3d.bias"] = torch.randn(400, generator=g)
    return out


@pytest.fixture(scope="module")
def tiny():
    return build_backbone(BackboneConfig(kind="i3d", source="random:tiny"))


def test_tiny_interface(tiny):
    clips = torch.randn(2, 16, 3, 64, 64)
    tok = tiny.tokens(clips)
    assert tok.shape == (2, 2, 128)  # T' = 16 / 8 tokens of 1024 / 8 channels
    out = tiny(clips)
    assert out.shape == (2, 128) and torch.allclose(out, tok.mean(1), atol=1e-6)
    assert tiny.embed_dim == 128 and tiny.image_size == 64 and tiny.num_frames == 16
    assert not any(p.requires_grad for p in tiny.parameters()) and not tiny.training
    assert torch.allclose(tiny(clips[:1]), out[:1], rtol=1e-4, atol=1e-5)  # eval-mode BatchNorm: per-sample
    # TF 'SAME' padding: any length and side, T' = ceil(T / 8)
    assert tiny.tokens(torch.randn(1, 10, 3, 40, 56)).shape == (1, 2, 128)


def test_full_architecture_on_meta():
    with torch.device("meta"):
        model = I3DEncoder(PRESETS["full"])
        tokens = model(torch.empty(1, 16, 3, 224, 224))
    # pytorch-i3d's InceptionI3d(num_classes=400) has 12,697,264 parameters; its classifier is
    # 1024 * 400 + 400 = 410,000 of them, which the encoder leaves out.
    assert sum(p.numel() for p in model.parameters()) == 12_697_264 - 410_000
    assert tokens.shape == (1, 2, 1024)  # Mixed_5c: 1024 x 2 x 7 x 7, averaged over space


def test_convert_public_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    reference = I3DEncoder(PRESETS["tiny"])
    public = public_state_dict(reference)
    torch.save(public, tmp_path / "rgb_imagenet.pt")
    out = tmp_path / "i3d.safetensors"
    assert convert_main([str(tmp_path / "rgb_imagenet.pt"), str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped"] == 2 + len(PUBLIC_UNITS) and report["hidden_size"] == 128
    # the same tensors loaded directly, by name
    direct = I3DEncoder(PRESETS["tiny"])
    direct.load_state_dict({public_to_ours(k): v for k, v in public.items() if public_to_ours(k)}, strict=True)
    direct.eval()
    loaded = build_backbone(BackboneConfig(kind="i3d", source=str(out)))
    clips = torch.randn(2, 16, 3, 64, 64)
    assert torch.equal(loaded.tokens(clips), direct(clips))
    assert describe(loaded)["embed_dim"] == 128
    # folder layout too (config.json + model.safetensors), and save_encoder's round trip
    assert convert_main([str(tmp_path / "rgb_imagenet.pt"), str(tmp_path / "i3d_dir")]) == 0
    assert json.loads((tmp_path / "i3d_dir" / "config.json").read_text())["hidden_size"] == 128
    save_encoder(loaded.encoder, tmp_path / "saved")
    again = build_backbone(BackboneConfig(kind="i3d", source=str(tmp_path / "saved")))
    assert torch.equal(again(clips), loaded(clips))


def test_runtime_never_unpickles(tmp_path, monkeypatch):
    torch.save(public_state_dict(I3DEncoder(PRESETS["tiny"])), tmp_path / "ckpt.pt")
    assert convert_main([str(tmp_path / "ckpt.pt"), str(tmp_path / "w.safetensors")]) == 0

    def refuse(*a, **k):
        raise AssertionError("torch.load called at run time")

    monkeypatch.setattr(torch, "load", refuse)
    assert build_backbone(BackboneConfig(kind="i3d", source=str(tmp_path / "w.safetensors"))).embed_dim == 128
    with pytest.raises(BackboneError, match="not a .safetensors file"):  # the pickle itself is refused
        build_backbone(BackboneConfig(kind="i3d", source=str(tmp_path / "ckpt.pt")))


def test_bad_inputs_say_what_to_do(tmp_path, capsys):
    with pytest.raises(BackboneError, match="convert_i3d"):
        build_backbone(BackboneConfig(kind="i3d", source=str(tmp_path / "missing.safetensors")))
    with pytest.raises(ConfigError, match="needs its own weights"):
        load_config(None, ["backbone.kind=i3d"])  # the demo's V-JEPA 2 source cannot feed I3D
    with pytest.raises(ConfigError, match="backbone.source.*convert_i3d"):  # before any work starts
        check_inputs(load_config(None, ["backbone.kind=i3d", f"backbone.source={tmp_path / 'no.safetensors'}"]))
    bad = public_state_dict(I3DEncoder(PRESETS["tiny"]))
    del bad["Mixed_5c.b3b.conv3d.weight"]
    torch.save(bad, tmp_path / "bad.pt")
    assert convert_main([str(tmp_path / "bad.pt"), str(tmp_path / "bad.safetensors")]) == 1
    assert "mixed_5c.branch3.conv.weight" in capsys.readouterr().err
