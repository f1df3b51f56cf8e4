"""Official UnivFD, NPR and CNNSpot checkpoints: converted folders give the official logits;
malformed checkpoints fail with messages that list what is wrong.

The official layouts are built from tiny models (NPR blocks (1, 1) width 4; CNNSpot blocks
(1, 1, 1, 1) width 4; UnivFD on the 'tiny' CLIP preset), with every tensor randomised so
BatchNorm statistics matter. The reference logits come from a functional re-implementation
of the official forward passes written here from the authors' code (torch.nn.functional on
the raw state dict), not from our modules.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import aigi
from aigi.backbones.clip import ClipBackboneConfig, load_clip_vision
from aigi.cli import app
from aigi.convert.baselines import convert_cnnspot, convert_npr, convert_univfd
from aigi.detectors import CheckpointError, create_detector
from aigi.detectors.registry import detector_class


# -- the official forward passes, functionally ---------------------------------------------
def _bn(x, sd, p):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _bottleneck(x, sd, p, stride):
    out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
    out = F.relu(_bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
    out = _bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
    if f"{p}.downsample.0.weight" in sd:
        x = _bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
    return F.relu(out + x)


def official_resnet(sd, x, *, stem_kernel, stages, fc):
    x = F.conv2d(x, sd["conv1.weight"], stride=2, padding=stem_kernel // 2)
    x = F.max_pool2d(F.relu(_bn(x, sd, "bn1")), 3, 2, 1)
    for i in range(1, stages + 1):
        j = 0
        while f"layer{i}.{j}.conv1.weight" in sd:
            x = _bottleneck(x, sd, f"layer{i}.{j}", 2 if i > 1 and j == 0 else 1)
            j += 1
    return F.linear(x.mean(dim=(2, 3)), sd[f"{fc}.weight"], sd[f"{fc}.bias"]).squeeze(-1)


def official_npr(sd, x):
    """NPR's forward: x - interpolate(interpolate(x, 0.5), 2) (nearest), times 2/3, then the ResNet."""
    half = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    npr = x - F.interpolate(half, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
    return official_resnet(sd, npr * 2.0 / 3.0, stem_kernel=3, stages=2, fc="fc1")


def official_cnnspot(sd, x):
    return official_resnet(sd, x, stem_kernel=7, stages=4, fc="fc")


def _randomised(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.3
    return out


def _official_state(method: str) -> dict[str, torch.Tensor]:
    det = create_detector(method, **detector_class(method).tiny_overrides)
    return _randomised(det.net.state_dict())  # NPR/CNNSpot's ResNet uses the official names


@pytest.fixture(scope="module")
def npr_state():
    return _official_state("npr")


@pytest.fixture(scope="module")
def cnnspot_state():
    return _official_state("cnnspot")


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))


# -- NPR ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["bare", "model", "state_dict+module", "bare+unused_fc"])
def test_npr_official_layouts_convert_to_the_official_logits(npr_state, tmp_path, layout):
    sd = dict(npr_state)
    if layout == "bare":
        obj = sd
    elif layout == "model":
        obj = {"model": sd, "total_steps": 10}
    elif layout == "state_dict+module":
        obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    else:
        obj = {**sd, "fc.weight": torch.randn(1, 2048), "fc.bias": torch.randn(1)}
    ckpt = tmp_path / "NPR.pth"
    torch.save(obj, ckpt)
    out = convert_npr(ckpt, tmp_path / "npr")
    det = aigi.load_detector(out).for_inference()
    assert det.method == "npr" and tuple(det.config.blocks) == (1, 1) and det.config.width == 4
    with torch.no_grad():
        assert torch.allclose(det(X), official_npr(npr_state, X), atol=1e-5, rtol=1e-5)
    record = json.loads((out / "conversion.json").read_text())
    assert record["format"] == "npr-official" and record["source"] == "NPR.pth" and len(record["source_sha256"]) == 64
    notes = " ".join(record["notes"])
    expected_note = {"bare": "bare state dict", "model": "under 'model'", "state_dict+module": "module.",
                     "bare+unused_fc": "dropped fc.weight/fc.bias"}[layout]
    assert expected_note in notes


def test_npr_malformed_checkpoints_list_what_is_wrong(npr_state, tmp_path):
    def attempt(obj, name="bad.pth"):
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(CheckpointError) as err:
            convert_npr(path, tmp_path / "out")
        return str(err.value)

    sd = dict(npr_state)
    missing = {k: v for k, v in sd.items() if k not in ("layer1.0.bn1.running_mean", "fc1.bias")}
    msg = attempt(missing)
    assert "missing keys [fc1.bias, layer1.0.bn1.running_mean]" in msg and "unexpected keys []" in msg
    msg = attempt({**sd, "layer3.0.conv1.weight": torch.zeros(1), "head.bias": torch.zeros(1)})
    assert "unexpected keys [head.bias, layer3.0.conv1.weight]" in msg and "net." not in msg
    msg = attempt({**sd, "fc1.weight": torch.zeros(1, 33)})
    assert "fc1.weight is (1, 33), expected (1, 32)" in msg
    msg = attempt({k: v for k, v in sd.items() if k != "conv1.weight"})
    assert "conv1.weight" in msg
    msg = attempt([torch.zeros(3)])
    assert "not a state dict" in msg and "a list" in msg
    msg = attempt({"model": {"conv1.weight": "not a tensor"}})
    assert "not a state dict" in msg
    assert not (tmp_path / "out" / "config.json").exists()


class _Payload:
    """Unpickling this would create a file: proof that the pickle's code never ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_with_arbitrary_objects_are_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "extra": _Payload(marker)}, ckpt)
    for convert in (convert_npr, convert_cnnspot, lambda c, o: convert_univfd(c, o, backbone="tiny")):
        with pytest.raises(CheckpointError, match="weights_only=True"):
            convert(ckpt, tmp_path / "out")
    assert not marker.exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a torch file")
    with pytest.raises(CheckpointError, match="cannot read .* as a PyTorch checkpoint"):
        convert_npr(junk, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        convert_npr(tmp_path / "absent.pth", tmp_path / "out")


# -- CNNSpot -----------------------------------------------------------------------------
def test_cnnspot_official_checkpoint(cnnspot_state, tmp_path):
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1]}]}
    ckpt = tmp_path / "blur_jpg_prob0.5.pth"
    torch.save({"model": cnnspot_state, "optimizer": optimizer, "total_steps": 12345}, ckpt)
    out = convert_cnnspot(ckpt, tmp_path / "cnnspot", threshold=0.4)
    det = aigi.load_detector(out).for_inference()
    assert det.method == "cnnspot" and det.config.threshold == 0.4
    with torch.no_grad():
        assert torch.allclose(det(X), official_cnnspot(cnnspot_state, X), atol=1e-5, rtol=1e-5)
    notes = " ".join(json.loads((out / "conversion.json").read_text())["notes"])
    assert "under 'model'" in notes and "optimizer, total_steps" in notes

    # PyTorch < 0.4.1 wrote no num_batches_tracked: filled with 0, same logits
    old = {k: v for k, v in cnnspot_state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": old}, ckpt)
    out2 = convert_cnnspot(ckpt, tmp_path / "cnnspot-old")
    with torch.no_grad():
        assert torch.allclose(aigi.load_detector(out2).eval()(X), official_cnnspot(cnnspot_state, X), atol=1e-5)
    assert "num_batches_tracked" in " ".join(json.loads((out2 / "conversion.json").read_text())["notes"])


def test_cnnspot_malformed(cnnspot_state, tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save({"model": {**cnnspot_state, "fc.weight": torch.zeros(2, 128)}}, ckpt)
    with pytest.raises(CheckpointError, match=r"fc.weight is \(2, 128\), expected \(1, 128\)"):
        convert_cnnspot(ckpt, tmp_path / "o")
    torch.save({"model": {k: v for k, v in cnnspot_state.items() if not k.startswith("layer4.")}}, ckpt)
    with pytest.raises(CheckpointError, match="layer4"):
        convert_cnnspot(ckpt, tmp_path / "o")
    torch.save({"net": cnnspot_state}, ckpt)
    with pytest.raises(CheckpointError, match="under 'model'"):
        convert_cnnspot(ckpt, tmp_path / "o")
    torch.save({"model": {**cnnspot_state, "fc1.weight": torch.zeros(1, 128)}}, ckpt)
    with pytest.raises(CheckpointError, match=r"unexpected keys \[fc1.weight\]"):
        convert_cnnspot(ckpt, tmp_path / "o")


# -- UnivFD ------------------------------------------------------------------------------
def test_univfd_head_on_a_clip_backbone(tmp_path):
    # 2-7 s on a busy machine: the first use of transformers' CLIP classes in the session,
    # and the tiny tower is built five times (convert x2, load x2, reference)
    g = torch.Generator().manual_seed(3)
    head = {"weight": torch.randn(1, 8, generator=g), "bias": torch.randn(1, generator=g)}  # tiny: projection 8
    ckpt = tmp_path / "fc_weights.pth"
    torch.save(head, ckpt)
    out = convert_univfd(ckpt, tmp_path / "univfd", backbone="tiny")
    record = json.loads((out / "conversion.json").read_text())
    assert record["adapter_only"] is True and record["backbone"] == "tiny"
    det = aigi.load_detector(out).for_inference()
    clip = load_clip_vision(ClipBackboneConfig(source="tiny")).eval()
    x = torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        reference = F.linear(clip(pixel_values=x).image_embeds, head["weight"], head["bias"]).squeeze(-1)
        assert torch.allclose(det(x), reference, atol=1e-5, rtol=1e-5)
    full = convert_univfd(ckpt, tmp_path / "univfd-full", backbone="tiny", full=True)
    with torch.no_grad():
        assert torch.allclose(aigi.load_detector(full).eval()(x), reference, atol=1e-5, rtol=1e-5)


def test_univfd_malformed(tmp_path):
    ckpt = tmp_path / "fc.pth"
    cases = [
        ({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, r"weight is \(1, 768\), expected \(1, 8\)"),
        ({"weight": torch.zeros(1, 8)}, r"missing keys \[bias\]"),
        ({"weight": torch.zeros(1, 8), "bias": torch.zeros(1), "scale": torch.ones(1)}, r"unexpected keys \[scale\]"),
        ({"fc": {"weight": torch.zeros(1, 8), "bias": torch.zeros(1)}}, "not a state dict"),
    ]
    for obj, message in cases:
        torch.save(obj, ckpt)
        with pytest.raises(CheckpointError, match=message):
            convert_univfd(ckpt, tmp_path / "o", backbone="tiny")


# -- the command line --------------------------------------------------------------------
def test_cli_convert_commands(npr_state, tmp_path, monkeypatch):
    runner = CliRunner()
    ckpt = tmp_path / "NPR.pth"
    torch.save(npr_state, ckpt)
    out = tmp_path / "npr"
    r = runner.invoke(app, ["convert", "npr", str(ckpt), "--output", str(out), "--threshold", "0.3"])
    assert r.exit_code == 0, r.output
    assert aigi.load_detector(out).config.threshold == 0.3
    r = runner.invoke(app, ["convert", "npr", str(ckpt), "-o", str(out)])
    assert r.exit_code == 1 and "already holds a detector" in r.output
    assert runner.invoke(app, ["convert", "npr", str(ckpt), "-o", str(out), "--force"]).exit_code == 0
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    r = runner.invoke(app, ["convert", "cnnspot", str(bad), "-o", str(tmp_path / "c")])
    assert r.exit_code == 1 and "layer1" in r.output
    head = tmp_path / "fc_weights.pth"
    torch.save({"weight": torch.zeros(1, 8), "bias": torch.zeros(1)}, head)
    r = runner.invoke(app, ["convert", "univfd", str(head), "-o", str(tmp_path / "u"), "--backbone", "tiny"])
    assert r.exit_code == 0, r.output

    calls = []
    fake = types.ModuleType("aigi.convert.effort")

    def convert_effort_official(checkpoint: Path, output: Path, *, backbone: str, preset: str | None,
                                overwrite: bool) -> Path:
        calls.append((checkpoint, output, backbone, preset))
        return output

    fake.convert_effort_official = convert_effort_official
    monkeypatch.setitem(sys.modules, "aigi.convert.effort", fake)
    r = runner.invoke(app, ["convert", "effort-official", "effort.pth", "-o", str(tmp_path / "e"), "--backbone", "tiny"])
    assert r.exit_code == 0, r.output
    assert calls == [(Path("effort.pth"), tmp_path / "e", "tiny", None)]


def test_converted_folder_serves_with_its_conversion_record(npr_state, tmp_path):
    from fastapi.testclient import TestClient

    from aigi.serve.app import create_app

    ckpt = tmp_path / "NPR.pth"
    torch.save({"model": npr_state}, ckpt)
    out = convert_npr(ckpt, tmp_path / "npr")
    with TestClient(create_app(out)) as c:
        card = c.get("/v1/model").json()
    assert card["conversion"]["format"] == "npr-official" and card["method"] == "npr"
