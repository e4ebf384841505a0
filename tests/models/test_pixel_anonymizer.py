"""f_P, the learned pixel anonymizer: identity at init, range, gradients through the frozen encoder (into f_P,
never into the encoder), the joint step of the SPLAVU objective on frames, safetensors round trip, configs."""

import numpy as np
import pytest
import torch

from splavu_ray.config import BackboneConfig, ConfigError, load_config
from splavu_ray.data.transforms import eval_transform
from splavu_ray.models.backbone import build_backbone
from splavu_ray.models.pixel_anonymizer import (
    PixelAnonymizer,
    PixelAnonymizerLoadError,
    PixelFeatureBranch,
    anonymize_normalized,
    load_pixel_anonymizer,
    save_pixel_anonymizer,
)
from splavu_ray.training.model import Batch, SplavuModel
from splavu_ray.training.steps import (
    Objective,
    head_step_loss,
    splavu_step_loss,
    validation_metrics,
)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone(BackboneConfig(source="random:tiny", image_size=16), "cpu", 2)


def test_identity_at_init_and_output_in_range():
    fp = PixelAnonymizer(width=4, depth=2)
    x = torch.rand(3, 3, 33, 30)  # odd sizes: the U-Net pads and crops back
    assert torch.allclose(fp(x), x.clamp(1e-4, 1 - 1e-4), atol=1e-6)
    torch.nn.init.normal_(fp.head.weight, std=5.0)
    y = fp(x).detach()
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    clips = eval_transform(np.random.default_rng(0).integers(0, 256, (2, 4, 40, 40, 3), dtype=np.uint8), 32)
    assert anonymize_normalized(PixelAnonymizer(4, 1), clips).shape == clips.shape
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fp(torch.rand(2, 4, 3, 8, 8))


def test_gradients_reach_f_p_and_not_the_encoder(backbone):
    branch = PixelFeatureBranch(backbone, clip_len=2, width=4, depth=1)
    torch.nn.init.normal_(branch.head.weight, std=0.1)  # past the zero init, so every layer gets a gradient
    assert not any(n.startswith("_backbone") for n, _ in branch.named_parameters())
    assert set(branch.state_dict()) == set(PixelAnonymizer(4, 1).state_dict())  # its state is f_P's
    frames = torch.randn(2, 1, 2, 3, 16, 16)
    z = branch(frames)
    assert z.shape == (2, 1, backbone.embed_dim)
    z.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    with torch.no_grad():  # the grad-enabled path equals the frozen forward on the same input
        assert torch.allclose(backbone.forward_with_input_grad(frames[:, 0]), backbone(frames[:, 0]), atol=1e-5)
    assert branch(torch.randn(2, 3, 3, 16, 16)).shape == (2, 3, backbone.embed_dim)  # static frames
    with torch.no_grad():  # without autograd (validation) it runs in chunks of clips, to the same features
        whole = branch(frames)
        branch.no_grad_chunk = 1
        assert torch.allclose(branch(frames), whole, atol=1e-5)


def test_the_same_objective_trains_f_p_on_frames(backbone):
    torch.manual_seed(0)
    branch = PixelFeatureBranch(backbone, clip_len=2, width=4, depth=1)
    model = SplavuModel(branch, num_actions=3)
    u8 = np.random.default_rng(0).integers(0, 256, (4, 4, 18, 18, 3), dtype=np.uint8)  # real pixels in [0, 255]
    frames = eval_transform(u8[:, :2], 16).unsqueeze(1)  # (4, 1, 2, 3, 16, 16)
    static_frames = eval_transform(u8[:, 2:].reshape(8, 1, 18, 18, 3), 16).reshape(4, 2, 3, 16, 16)
    with torch.no_grad():
        raw = backbone(frames[:, 0]).unsqueeze(1)
        raw_static = backbone(static_frames.reshape(8, 1, 3, 16, 16).expand(-1, 2, -1, -1, -1)).reshape(4, 2, -1)
    batch = Batch(raw, raw_static, torch.tensor([0, 1, 2, 0]), frames=frames, static_frames=static_frames)
    out = splavu_step_loss(model, batch, Objective(), torch.Generator().manual_seed(0))
    assert float(out["l_lc"]) < 1e-4  # f_P is the identity at init: anonymized features = raw ones
    out["loss"].backward()
    assert branch.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())
    model.zero_grad()
    head_step_loss(model, batch)["loss"].backward()
    assert model.action_head.fc.weight.grad.abs().sum() > 0 and branch.head.weight.grad is not None  # anchored
    m = validation_metrics(model, frames, static_frames, batch.action, 0.1)
    assert 0 <= m["val_top1"] <= 100


def test_safetensors_round_trip(tmp_path):
    fp = PixelAnonymizer(width=4, depth=2)
    torch.nn.init.normal_(fp.head.weight)
    save_pixel_anonymizer(fp, tmp_path / "fp", {"epoch": 3})
    assert sorted(p.name for p in (tmp_path / "fp").iterdir()) == ["pixel_anonymizer.json",
                                                                  "pixel_anonymizer.safetensors"]
    back = load_pixel_anonymizer(tmp_path / "fp" / "pixel_anonymizer.safetensors")
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(back(x), fp.eval()(x))
    with pytest.raises(PixelAnonymizerLoadError, match="not a pixel anonymizer export"):
        load_pixel_anonymizer(tmp_path)


def test_bad_combinations_are_rejected():
    with pytest.raises(ConfigError, match="train.anonymizer=pixel_unet needs train.mode=online"):
        load_config(None, ["train.anonymizer=pixel_unet"])
    with pytest.raises(ConfigError, match="loss.w_tad=0"):
        load_config(None, ["train.anonymizer=pixel_unet", "train.mode=online", "loss.w_tad=1"])
    with pytest.raises(ConfigError, match="transform=learned and data.pixel.anonymizer=PATH"):
        load_config(None, ["data.pixel.transform=learned"])
    with pytest.raises(ConfigError, match="unknown config key 'pixel_unet.widht'"):
        load_config(None, ["pixel_unet.widht=3"])
