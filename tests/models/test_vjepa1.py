"""V-JEPA (v1) behind the backbone interface: shapes, ViT-H/16's size, and the facebookresearch/jepa converter."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from splavu_ray.config import BackboneConfig
from splavu_ray.models.backbone import BackboneError, build_backbone
from splavu_ray.models.convert_vjepa1 import main as convert_main
from splavu_ray.models.vjepa1 import VJEPA1Encoder, preset, sincos_pos_embed

TINY = preset("tiny")  # 64 px, 16 frames, tubelet 2, patch 16, width 96, depth 2, 4 heads


def public_encoder(seed: int, prefix: str, cfg=TINY) -> dict[str, torch.Tensor]:
    """Random encoder tensors named as facebookresearch/jepa's VisionTransformer state dict."""
    g = torch.Generator().manual_seed(seed)
    d, m = cfg.hidden_size, cfg.mlp_hidden

    def r(*shape, s=0.05):
        return torch.randn(*shape, generator=g) * s

    n = (cfg.num_frames // 2) * (cfg.image_size // 16) ** 2
    state = {"patch_embed.proj.weight": r(d, 3, 2, 16, 16), "patch_embed.proj.bias": r(d),
             "pos_embed": r(1, n, d, s=1.0), "norm.weight": 1 + r(d), "norm.bias": r(d)}
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        state.update({b + "norm1.weight": 1 + r(d), b + "norm1.bias": r(d), b + "attn.qkv.weight": r(3 * d, d),
                      b + "attn.qkv.bias": r(3 * d), b + "attn.proj.weight": r(d, d), b + "attn.proj.bias": r(d),
                      b + "norm2.weight": 1 + r(d), b + "norm2.bias": r(d), b + "mlp.fc1.weight": r(m, d),
                      b + "mlp.fc1.bias": r(m), b + "mlp.fc2.weight": r(d, m), b + "mlp.fc2.bias": r(d)})
    return {prefix + k: v for k, v in state.items()}


def reference_forward(w: dict[str, torch.Tensor], clips: torch.Tensor, heads: int) -> torch.Tensor:
    """The jepa encoder's arithmetic written out with torch.nn.functional, from the raw tensors."""
    x = clips.transpose(1, 2)
    x = F.conv3d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=(2, 16, 16))
    x = x.flatten(2).transpose(1, 2) + w["pos_embed"]
    b, n, d = x.shape
    i = 0
    while f"blocks.{i}.norm1.weight" in w:
        p = f"blocks.{i}."
        h = F.layer_norm(x, (d,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps=1e-6)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"]).reshape(b, n, 3, heads, d // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(-1)
        heads_out = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = x + F.linear(heads_out, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = F.layer_norm(x, (d,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps=1e-6)
        x = x + F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                         w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        i += 1
    return F.layer_norm(x, (d,), w["norm.weight"], w["norm.bias"], eps=1e-6)


def test_tiny_interface():
    tiny = build_backbone(BackboneConfig(kind="vjepa1", source="random:tiny"))
    clips = torch.randn(2, 16, 3, 64, 64)
    tok = tiny.tokens(clips)
    assert tok.shape == (2, 8 * 4 * 4, 96)  # tubelet 2, patch 16 on 64 px
    assert tiny(clips).shape == (2, 96) and tiny.embed_dim == 96 and tiny.image_size == 64
    assert not any(p.requires_grad for p in tiny.parameters())
    assert torch.allclose(tiny(clips[:1]), tiny(clips)[:1], atol=1e-5)
    # another clip length: the position grid is resized (8 frames -> 4 x 4 x 4 tokens)
    assert tiny.tokens(torch.randn(1, 8, 3, 64, 64)).shape == (1, 64, 96)


def test_vith16_size_on_meta():
    cfg = preset("vith16")
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.mlp_hidden, cfg.tubelet_size, cfg.patch_size) == \
        (32, 1280, 16, 5120, 2, 16)
    with torch.device("meta"):
        model = VJEPA1Encoder(cfg)
        tokens = model(torch.empty(1, 16, 3, 224, 224))
    # patch embed 3*2*16*16*1280 + 1280; per block 2 LayerNorms + qkv + proj + fc1 + fc2; final LayerNorm
    per_block = 4 * 1280 + (1280 * 3840 + 3840) + (1280 * 1280 + 1280) + (1280 * 5120 + 5120) + (5120 * 1280 + 1280)
    expected = 3 * 2 * 16 * 16 * 1280 + 1280 + 32 * per_block + 2 * 1280
    assert sum(p.numel() for p in model.parameters()) == expected == 631_648_000
    assert tokens.shape == (1, 8 * 14 * 14, 1280)


def test_sincos_matches_reference_layout():
    # uniform power on width 96: t, h and w each get 32 channels ([sin 16 | cos 16]), t-major token order
    pe = sincos_pos_embed(96, (2, 3, 3))[0]
    assert pe.shape == (18, 96)
    token = 1 * 9 + 2 * 3 + 1  # t=1, h=2, w=1
    omega = 1.0 / 10000 ** (torch.arange(16) / 16)
    assert torch.allclose(pe[token, :16], torch.sin(1.0 * omega), atol=1e-6)  # t block, sin half
    assert torch.allclose(pe[token, 32:48], torch.sin(2.0 * omega), atol=1e-6)  # h block, sin half
    assert torch.allclose(pe[token, 64 + 16:96], torch.cos(1.0 * omega), atol=1e-6)  # w block, cos half


@pytest.mark.parametrize("prefix", ["module.backbone.", "module."])
def test_convert_public_checkpoint(tmp_path, capsys, prefix, monkeypatch):
    target = public_encoder(1, prefix)
    ckpt = {"encoder": public_encoder(2, prefix), "target_encoder": target,
            "predictor": {"module.predictor_embed.weight": torch.randn(4, 96)}, "epoch": 300, "loss": 0.1,
            "batch_size": 24, "world_size": 128, "lr": 6.25e-4}
    torch.save(ckpt, tmp_path / "vith16.pth.tar")
    out = tmp_path / "vjepa1"
    assert convert_main([str(tmp_path / "vith16.pth.tar"), str(out), "--heads", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["key"] == "target_encoder" and report["depth"] == 2 and report["image_size"] == 64
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 96

    def refuse(*a, **k):
        raise AssertionError("torch.load called at run time")

    monkeypatch.setattr(torch, "load", refuse)  # run time reads safetensors only
    loaded = build_backbone(BackboneConfig(kind="vjepa1", source=str(out)))
    clips = torch.randn(2, 16, 3, 64, 64)
    tokens = loaded.tokens(clips)
    stripped = {k[len(prefix):]: v for k, v in target.items()}
    direct = VJEPA1Encoder(TINY)
    direct.load_state_dict(stripped, strict=True)
    assert torch.equal(tokens, direct.eval()(clips))  # the same tensors loaded directly
    # and the architecture is the reference's arithmetic on those tensors
    assert torch.allclose(tokens, reference_forward(stripped, clips, heads=4), atol=1e-4)


def test_converter_and_loader_errors(tmp_path, capsys):
    torch.save({"encoder": {"module.foo": torch.zeros(1)}}, tmp_path / "bad.pth.tar")
    assert convert_main([str(tmp_path / "bad.pth.tar"), str(tmp_path / "o")]) == 1
    assert "patch_embed.proj.weight" in capsys.readouterr().err
    torch.save({"opt": {}}, tmp_path / "nokey.pth.tar")
    assert convert_main([str(tmp_path / "nokey.pth.tar"), str(tmp_path / "o")]) == 1
    assert "target_encoder" in capsys.readouterr().err
    with pytest.raises(BackboneError, match="convert_vjepa1"):
        build_backbone(BackboneConfig(kind="vjepa1", source=str(tmp_path / "nothing")))
    # weights of another kind are refused by name
    torch.save({"target_encoder": public_encoder(0, "module.")}, tmp_path / "ok.pth.tar")
    assert convert_main([str(tmp_path / "ok.pth.tar"), str(tmp_path / "v.safetensors"), "--heads", "4"]) == 0
    with pytest.raises(BackboneError, match="not i3d"):
        build_backbone(BackboneConfig(kind="i3d", source=str(tmp_path / "v.safetensors")))
