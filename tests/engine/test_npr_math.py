"""NPR's residual and the ResNet it feeds, down to the math and the official names."""

import torch

import aigi
from aigi.backbones.resnet import ResNet, hf_resnet_to_torchvision, load_imagenet_weights
from aigi.detectors.npr import npr_residual


def test_residual_is_exactly_zero_on_2x2_block_constant_image():
    small = torch.rand(2, 3, 8, 8)
    x = small.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    r = npr_residual(x)
    assert r.shape == x.shape
    assert torch.count_nonzero(r) == 0


def test_residual_is_pixel_minus_top_left_of_block():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    r = npr_residual(x)
    expect = torch.tensor([[0, 1, 0, 1], [4, 5, 4, 5], [0, 1, 0, 1], [4, 5, 4, 5]], dtype=torch.float32)
    assert torch.equal(r[0, 0], expect)


def test_residual_matches_nearest_down_up_interpolation():
    x = torch.rand(1, 3, 10, 12)
    down = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    up = torch.nn.functional.interpolate(down, scale_factor=2, mode="nearest", recompute_scale_factor=True)
    assert torch.equal(npr_residual(x), x - up)


def test_odd_sizes_are_cropped_to_even():
    assert npr_residual(torch.rand(1, 3, 9, 7)).shape == (1, 3, 8, 6)


def test_input_scale_two_thirds_reaches_conv1():
    model = aigi.create_detector("npr").eval()
    assert abs(model.config.input_scale - 2 / 3) < 1e-12
    seen = {}
    model.net.conv1.register_forward_hook(lambda m, i, o: seen.update(input=i[0]))
    x = torch.rand(1, 3, 32, 32)
    model(x)
    torch.testing.assert_close(seen["input"], npr_residual(x) * 2 / 3)


def test_full_npr_parameter_count_and_official_names():
    model = aigi.create_detector("npr")
    n = sum(p.numel() for p in model.parameters())
    assert n == 1_437_761  # the paper's "1.44 M"
    keys = set(model.net.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.3.bn3.weight",
            "layer1.0.downsample.0.weight", "fc1.weight", "fc1.bias"} <= keys
    assert not any(k.startswith(("layer3", "layer4", "fc.")) for k in keys)
    assert model.net.conv1.kernel_size == (3, 3) and model.net.conv1.stride == (2, 2)
    assert model.net.fc1.in_features == 512


def test_cnnspot_has_torchvision_resnet50_names_and_head():
    model = aigi.create_detector("cnnspot")
    sd = model.net.state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["fc.weight"].shape == (1, 2048)
    assert sum(v.numel() for k, v in sd.items() if "num_batches" not in k and "running" not in k) == 23_510_081


def test_imagenet_weights_from_torchvision_pth(tmp_path):
    src = ResNet((1, 1, 1, 1), width=4, num_outputs=1000)
    torch.save(src.state_dict(), tmp_path / "resnet.pth")
    dst = ResNet((1, 1, 1, 1), width=4, num_outputs=1)
    load_imagenet_weights(dst, tmp_path / "resnet.pth")
    x = torch.rand(2, 3, 32, 32)
    src.eval(), dst.eval()
    torch.testing.assert_close(dst.features(x), src.features(x))


def test_imagenet_weights_into_truncated_network(tmp_path):
    src = ResNet((1, 1, 1, 1), width=4, num_outputs=1000)
    torch.save(src.state_dict(), tmp_path / "r.pth")
    dst = ResNet((1, 1, 1, 1), stages=2, width=4, fc_name="fc1")
    load_imagenet_weights(dst, tmp_path / "r.pth")
    assert torch.equal(dst.layer2[0].conv1.weight, src.layer2[0].conv1.weight)


def test_hf_resnet_names_map_to_torchvision():
    from transformers import ResNetConfig, ResNetModel

    cfg = ResNetConfig(embedding_size=4, hidden_sizes=[16, 32], depths=[1, 2], layer_type="bottleneck",
                       downsample_in_first_stage=False)
    hf = ResNetModel(cfg).eval()
    for m in hf.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = ResNet((1, 2), stages=2, width=4).eval()
    mapped = hf_resnet_to_torchvision(hf.state_dict())
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    assert unexpected == [] and set(missing) == {"fc.weight", "fc.bias"}
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = hf(pixel_values=x).pooler_output.flatten(1)
        torch.testing.assert_close(ours.features(x), ref, rtol=1e-5, atol=1e-5)
