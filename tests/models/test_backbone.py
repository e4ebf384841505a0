import pytest
import torch

from splavu_ray.config import BackboneConfig
from splavu_ray.models.backbone import BackboneError, build_backbone, describe, load_encoder, save_encoder


@pytest.fixture(scope="module", params=["vjepa2", "videomae"])
def tiny(request):
    torch.manual_seed(0)
    return build_backbone(BackboneConfig(kind=request.param, source="random:tiny"))


def test_interface_shapes(tiny):
    clips = torch.randn(3, 16, 3, 64, 64)
    assert tiny(clips).shape == (3, tiny.embed_dim)
    tok = tiny.tokens(clips)
    assert tok.shape == (3, 8 * 4 * 4, tiny.embed_dim)  # tubelet 2, patch 16 on 64 px
    assert tiny.embed_dim == 192 and tiny.num_frames == 16 and tiny.image_size == 64


def test_frozen_eval_no_grad(tiny):
    tiny.train()
    assert not tiny.training and not any(m.training for m in tiny.modules())
    assert not any(p.requires_grad for p in tiny.parameters())
    clips = torch.randn(2, 16, 3, 64, 64, requires_grad=True)
    out = tiny(clips)
    assert not out.requires_grad
    # deterministic (no dropout) and per-sample independent
    assert torch.allclose(tiny(clips[:1]), out[:1], atol=1e-5)


def test_rejects_wrong_layout(tiny):
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        tiny(torch.randn(2, 3, 16, 64, 64))


def test_local_folder_roundtrip(tmp_path, tiny):
    save_encoder(tiny.encoder, tmp_path / "enc")
    again = build_backbone(BackboneConfig(kind=tiny.kind, source=str(tmp_path / "enc")))
    clips = torch.randn(2, 16, 3, 64, 64)
    assert torch.allclose(again(clips), tiny(clips), atol=1e-5)
    assert describe(again)["embed_dim"] == 192
    assert not list((tmp_path / "enc").glob("*.bin"))  # safetensors only


def test_unreachable_hub_id_says_how_to_provide_weights():
    with pytest.raises(BackboneError) as err:
        load_encoder("vjepa2", "facebook/vjepa2-vith-fpc64-256")
    msg = str(err.value)
    assert "facebook/vjepa2-vith-fpc64-256" in msg and "backbone.source=DIR" in msg


def test_missing_folder_and_bad_preset(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        load_encoder("vjepa2", str(tmp_path / "missing"))
    with pytest.raises(BackboneError, match="random preset"):
        load_encoder("vjepa2", "random:huge")


def test_attentive_pooling(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    with pytest.raises(BackboneError, match="pooler_path"):
        build_backbone(BackboneConfig(source="random:tiny", pooling="attentive"))
    mean = build_backbone(BackboneConfig(source="random:tiny"))
    from splavu_ray.models.backbone import AttentivePooler

    pooler = AttentivePooler(mean.encoder.config)
    save_file({f"pooler.{k}": v.contiguous() for k, v in pooler.inner.state_dict().items()}, str(tmp_path / "p.safetensors"))
    torch.manual_seed(0)
    att = build_backbone(BackboneConfig(source="random:tiny", pooling="attentive", pooler_path=str(tmp_path / "p.safetensors")))
    out = att(torch.randn(2, 16, 3, 64, 64))
    assert out.shape == (2, 192)
