"""The Hub without the network: a local folder in the Hub cache layout, offline mode, patched uploads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import aigi
from aigi import hub
from aigi.cli import app
from aigi.detectors import detector_class, load_detector

MAIN = "a" * 40
V1 = "b" * 40


def _tiny_npr(threshold: float = 0.5):
    return aigi.create_detector("npr", **detector_class("npr").tiny_overrides, threshold=threshold)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """``alice/npr-demo`` cached as the Hub client lays it out: main and tag v1 at two commits."""
    import huggingface_hub.constants as constants

    assert constants.HF_HUB_OFFLINE, "tests run with HF_HUB_OFFLINE=1 (tests/conftest.py)"
    cache = tmp_path / "hf-cache"
    repo = cache / "models--alice--npr-demo"
    torch.manual_seed(1)
    _tiny_npr(0.5).save_pretrained(repo / "snapshots" / MAIN)
    torch.manual_seed(2)
    _tiny_npr(0.7).save_pretrained(repo / "snapshots" / V1)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v1").write_text(V1)
    clf = cache / "models--bob--vit-clf" / "snapshots" / MAIN
    clf.mkdir(parents=True)
    (clf / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"]}))
    (cache / "models--bob--vit-clf" / "refs").mkdir()
    (cache / "models--bob--vit-clf" / "refs" / "main").write_text(MAIN)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_snapshot_resolves_revisions_offline(hub_cache):
    main = hub.snapshot("alice/npr-demo")
    assert main == hub_cache / "models--alice--npr-demo" / "snapshots" / MAIN
    assert json.loads((main / "config.json").read_text())["threshold"] == 0.5
    v1 = hub.snapshot("alice/npr-demo", revision="v1")
    assert json.loads((v1 / "config.json").read_text())["threshold"] == 0.7
    assert hub.snapshot("alice/npr-demo", revision=V1) == v1


def test_load_detector_accepts_a_hub_id(hub_cache):
    model = aigi.load_detector("alice/npr-demo", revision="v1")
    ref = load_detector(hub_cache / "models--alice--npr-demo" / "snapshots" / V1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), ref.eval()(x))
    assert model.config.threshold == 0.7


def test_snapshot_errors_say_what_to_do(hub_cache):
    with pytest.raises(hub.HubError, match="not in the local Hugging Face cache.*local detector folder"):
        hub.snapshot("alice/npr-demo", revision="v9")
    with pytest.raises(hub.HubError, match="carol/none"):
        hub.snapshot("carol/none")
    with pytest.raises(hub.HubError, match="names no aigi method.*aigi import-hf bob/vit-clf"):
        hub.snapshot("bob/vit-clf")
    with pytest.raises(hub.HubError, match="expected 'user/repo'"):
        hub.snapshot("just-a-name")


@pytest.fixture
def full_folder(tmp_path) -> Path:
    """A detector folder with every side file a model card reads."""
    folder = tmp_path / "npr-run"
    _tiny_npr(0.45).save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps(
        {"detector": "npr", "steps": 120, "train_images": 640, "train_data": "data/progan/train",
         "recipe_sha256": "f00d"}))
    (folder / "calibration.json").write_text(json.dumps(
        {"threshold": 0.6125, "target_fpr": 0.05, "fpr": 0.048, "tpr": 0.81, "n_real": 250,
         "data": "data/calib", "band": {"low": 0.3, "high": 0.8, "source": "width"}}))
    (folder / "eval").mkdir()
    (folder / "eval" / "metrics.json").write_text(json.dumps(
        {"method": "npr", "data": "data/test", "threshold": 0.45,
         "subsets": {"sdxl": {"acc": 0.875, "r_acc": 0.9, "f_acc": 0.85, "ap": 0.93, "auroc": 0.92,
                              "n_real": 50, "n_fake": 50}},
         "mean": {"acc": 0.875, "r_acc": 0.9, "f_acc": 0.85, "ap": 0.93, "auroc": 0.92}}))
    (folder / "checkpoints" / "step-1").mkdir(parents=True)
    (folder / "checkpoints" / "step-1" / "state.bin").write_bytes(b"x")
    return folder


def test_model_card_has_every_section(full_folder):
    card = hub.model_card(full_folder, "alice/npr-progan")
    assert card.startswith("---\nlibrary_name: aigi\n")
    for needle in (
        "**npr**",                                   # method
        "Tan et al., CVPR 2024",                     # paper
        "`data/progan/train`", "images: 640, steps: 120",  # training data
        "| test | `resize` |", "| size | `32` |",   # preprocessing
        "threshold: **0.45**",                       # threshold
        "calibrated threshold: **0.6125** (FPR 4.8% on 250 real images of `data/calib`, TPR 81.0%)",
        "abstain band: P in [0.3, 0.8)",
        "| sdxl | 87.5 | 90.0 | 85.0 | 93.0 | 92.0 | 50 | 50 |",  # benchmark numbers
        "up-sampling",                               # the method's own limit
        "open problem",                              # and the general ones
        'aigi.load_detector("alice/npr-progan")',
    ):
        assert needle in card, needle


def test_model_card_says_what_is_missing(tmp_path):
    _tiny_npr().save_pretrained(tmp_path / "bare")
    card = hub.model_card(tmp_path / "bare")
    assert "Not recorded in this folder (no `training.json`)" in card
    assert "calibration: none" in card and "No benchmark numbers" in card


def test_push_uploads_folder_and_card_without_checkpoints(full_folder, monkeypatch):
    import huggingface_hub

    calls: dict = {}

    class FakeApi:
        endpoint = "http://hub.invalid"

        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)

        def create_branch(self, repo_id, branch, exist_ok=False):
            calls["branch"] = branch

        def create_commit(self, repo_id, operations, revision=None, commit_message=None):
            calls["ops"] = {op.path_in_repo: op for op in operations}
            calls["revision"] = revision
            return type("Info", (), {"commit_url": f"{self.endpoint}/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    res = hub.push(full_folder, "alice/npr-progan", private=True, revision="dev")
    assert calls["repo"] == ("alice/npr-progan", True, True) and calls["branch"] == "dev" == calls["revision"]
    assert set(calls["ops"]) == {"config.json", "model.safetensors", "training.json", "calibration.json",
                                 "eval/metrics.json", "README.md"}
    readme = calls["ops"]["README.md"].path_or_fileobj
    readme = readme.read() if hasattr(readme, "read") else readme
    assert b"calibrated threshold" in readme
    assert res.url.endswith("/commit/1")


def test_push_refuses_a_folder_that_does_not_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text("{}")
        hub.push(tmp_path / "m", "alice/x", dry_run=True)
    with pytest.raises(hub.HubError, match="not a valid Hub repository id"):
        hub.push(tmp_path / "m", "alice/bad name", dry_run=True)


def test_cli_push_dry_run_prints_the_card(full_folder):
    r = CliRunner().invoke(app, ["push", str(full_folder), "alice/npr-progan", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "## Limits" in r.stdout and "calibrated threshold" in r.stdout
    assert "would upload: config.json, model.safetensors" in r.output


def test_export_a_hub_detector(hub_cache, tmp_path):
    pytest.importorskip("onnxscript")
    from aigi.export import ExportError, export_onnx, load_onnx_detector

    with pytest.raises(ExportError, match="needs a local detector folder"):
        export_onnx("alice/npr-demo", revision="v1")
    res = export_onnx("alice/npr-demo", tmp_path / "npr.onnx", revision="v1")
    assert load_onnx_detector(res.path).config.threshold == 0.7
    assert not list((hub_cache / "models--alice--npr-demo").rglob("*.onnx")), "nothing is written into the cache"


def test_an_exported_file_in_the_folder_is_published_and_described(full_folder):
    for name in ("model.onnx", "model.json"):
        (full_folder / name).write_bytes(b"stand-in")
    assert {"model.onnx", "model.json"} <= set(hub.push_files(full_folder))
    assert "checkpoints" not in " ".join(hub.push_files(full_folder))
    assert "## ONNX" in hub.model_card(full_folder)
