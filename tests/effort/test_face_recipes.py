"""The face-forgery recipes (FF++ -> Celeb-DF layout) train on a face-box manifest and crop before preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import aigi
from aigi.benchmark.protocol import load_protocol
from aigi.data.faces import crop_face
from aigi.data.layouts import load_samples
from aigi.data.transforms import build_transform
from aigi.evaluate.runner import score_samples
from aigi.train import load_recipe, train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FACES = ["effort", "masm", "selop"]


def frame(seed: int, box: tuple[int, int, int, int], fake: bool) -> Image.Image:
    """A 'video frame': dark noise with a bright square 'face' at ``box`` (fakes get a checkerboard face)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 40, size=(60, 80, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    face = np.full((y1 - y0, x1 - x0, 3), 220, dtype=np.uint8)
    if fake:
        face[::2, ::2] = 120
    arr[y0:y1, x0:x1] = face
    return Image.fromarray(arr)


@pytest.fixture
def face_manifest(tmp_path: Path) -> Path:
    rows = ["path,label,subset,x0,y0,x1,y1"]
    for i in range(8):
        box = (10 + 3 * i, 8 + 2 * i, 34 + 3 * i, 32 + 2 * i)
        frame(i, box, fake=bool(i % 2)).save(tmp_path / f"f{i}.png")
        rows.append(f"f{i}.png,{i % 2},ffpp,{','.join(map(str, box))}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "train.csv"


@pytest.mark.parametrize("name", FACES)
def test_face_recipe_is_the_manifest_layout_with_the_ffpp_crop(name):
    raw = yaml.safe_load((CONFIGS / "faces" / f"{name}_ffpp.yaml").read_text())
    assert raw["detector"] == name and raw["data"]["layout"] == "manifest"
    cfg = load_recipe(CONFIGS / "faces" / f"{name}_ffpp.yaml")
    model_cfg = aigi.detectors.detector_class(name).config_class.from_overrides(cfg.overrides)
    assert model_cfg.preprocess.face_scale == 1.3 and model_cfg.preprocess.test == "resize"
    assert aigi.detectors.registry.FACE_FORGERY in aigi.detectors.registry.detector_tasks()[name]


def test_face_protocol_names_the_three_face_recipes():
    p = load_protocol(CONFIGS / "protocols" / "ffpp_celebdf.yaml")
    assert [d.name for d in p.detectors] == FACES
    assert p.data.layout == "manifest" and p.training_data.layout == "manifest"


@pytest.mark.parametrize("name", FACES)
def test_face_recipe_trains_tiny_on_face_boxes(name, face_manifest, tmp_path):
    raw = yaml.safe_load((CONFIGS / "faces" / f"{name}_ffpp.yaml").read_text())
    tiny = aigi.detectors.detector_class(name).tiny_overrides
    raw["overrides"].update({**tiny, "preprocess.size": 32, "backbone": "tiny"})
    if name == "selop":
        raw["overrides"].update({"rank": 4, "hidden": 8})
    raw["data"]["train"] = str(face_manifest)
    raw.update({"epochs": None, "max_steps": 2, "batch_size": 4, "num_workers": 0, "checkpoint_every": 100})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    res = train(load_recipe(recipe), tmp_path / "run", progress=False)
    assert res.steps == 2 and not res.skipped_files
    model = aigi.load_detector(tmp_path / "run")
    assert model.preprocess_config().face_scale == 1.3  # the crop travels with the detector
    samples = load_samples(face_manifest, "manifest")
    scores = score_samples(model, samples)
    assert scores.indices == list(range(len(samples))) and not scores.errors
    # evaluation sees exactly the enlarged face crop, through the detector's own test transform
    tf = build_transform(model.preprocess_config(), train=False)
    pixels = torch.stack([tf(crop_face(Image.open(s.path).convert("RGB"), s.box, 1.3)) for s in samples])
    with torch.no_grad():
        expected = model.eval()(pixels)
    torch.testing.assert_close(torch.tensor(scores.logits), expected, rtol=1e-4, atol=1e-4)


def test_bench_scores_the_face_crops_one_entry_per_box(tmp_path):
    from aigi.benchmark.protocol import protocol_from_dict
    from aigi.benchmark.run import run_protocol
    from aigi.benchmark.store import ResultStore

    data = tmp_path / "celebdf"
    data.mkdir()
    rows = ["path,label,subset,x0,y0,x1,y1"]
    boxes = {}
    for i in range(8):
        box = (10 + 3 * i, 8 + 2 * i, 34 + 3 * i, 32 + 2 * i)
        frame(i, box, fake=bool(i % 2)).save(data / f"f{i}.png")
        rows.append(f"f{i}.png,{i % 2},celebdf,{','.join(map(str, box))}")
        boxes[f"f{i}.png"] = box
    rows.append("f0.png,0,celebdf,40,30,60,50")  # a second face in the same frame: its own entry
    (data / "test.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    model = aigi.create_detector("effort", **{**aigi.detectors.detector_class("effort").tiny_overrides,
                                              "preprocess.size": 32, "preprocess.test": "resize"})
    model.save_pretrained(tmp_path / "model")
    proto = protocol_from_dict({
        "name": "faces", "data": {"test": str(data / "test.csv"), "layout": "manifest"},
        "calibration": {"holdout": 0.25, "fpr": 0.1},
        "detectors": [{"name": "effort", "model": str(tmp_path / "model")}],
        "tasks": {"generalization": {}}, "metrics": {"bootstrap": 0}, "run": {"batch_size": 4, "progress": False},
    })
    res = run_protocol(proto, tmp_path / "out", report=False)
    with ResultStore(res.store) as store:
        scores = store.all_scores()
    assert len(scores) == 9 and len({r[0] for r in scores}) == 9  # 9 boxes, 8 files
    # every stored logit is the detector on the enlarged face crop
    again = aigi.load_detector(tmp_path / "model").eval()
    tf = build_transform(again.preprocess_config(), train=False)
    samples = load_samples(data / "test.csv", "manifest")
    with torch.no_grad():
        expected = sorted(float(again(tf(crop_face(Image.open(s.path).convert("RGB"), s.box, 1.3))[None])[0])
                          for s in samples)
    torch.testing.assert_close(torch.tensor(sorted(r[4] for r in scores)), torch.tensor(expected), rtol=1e-4, atol=1e-4)
