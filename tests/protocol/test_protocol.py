"""Protocol files: validation with clear errors, paths, overrides, the content hash, the shipped protocols."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aigi.data.transforms import AugmentConfig
from aigi.benchmark.plan import condition_name, planned_conditions
from aigi.benchmark.protocol import ProtocolError, augmentation_overrides, load_protocol, protocol_from_dict

REPO = Path(__file__).resolve().parents[2]


def _base(**extra) -> dict:
    data = {
        "name": "t",
        "data": {"test": "test-data"},
        "detectors": [{"name": "npr", "model": "models/npr"},
                      {"name": "cnn", "recipe": "recipes/cnn.yaml", "overrides": ["max_steps=3"]}],
        "tasks": {"generalization": {}},
    }
    data.update(extra)
    return data


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "sub" / "p.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_paths_are_relative_to_the_file_and_overrides_to_cwd(tmp_path, monkeypatch):
    path = _write(tmp_path, _base())
    monkeypatch.chdir(tmp_path)
    p = load_protocol(path, ["detectors.npr.model=other/npr", "detectors.1.overrides=[max_steps=5]",
                             "calibration.fpr=0.01", "run.batch_size=4"])
    assert p.data.test == str(tmp_path / "sub" / "test-data")
    assert p.detector("npr").model == str(tmp_path / "other" / "npr")
    assert p.detector("cnn").recipe == str(tmp_path / "sub" / "recipes" / "cnn.yaml")
    assert p.detector("cnn").override_list() == ["max_steps=5"]
    assert p.calibration.fpr == 0.01 and p.run.batch_size == 4
    q = load_protocol(path, ["data.test=/abs/data"])
    assert q.data.test == "/abs/data"


def test_hash_is_content_not_spelling_or_run_settings(tmp_path):
    a = protocol_from_dict(_base(tasks={"robustness": {"degradations": ["blur:2.0", "resize:0.5"]}}), base=tmp_path)
    b = protocol_from_dict(_base(tasks={"robustness": {"degradations": ["blur:2", "resize:0.5:bilinear"]}},
                                 run={"batch_size": 3, "device": "cpu"}), base=tmp_path)
    c = protocol_from_dict(_base(tasks={"robustness": {"degradations": ["blur:3", "resize:0.5"]}}), base=tmp_path)
    assert len(a.digest()) == 64
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()
    assert a.tasks.robustness.degradations == ["blur:2", "resize:0.5:bilinear"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataa": {}}, r"dataa: unknown key"),
        ({"data": {}}, r"data\.test: required field is missing"),
        ({"detectors": [{"name": "x", "model": "m", "recipe": "r"}]}, r"needs exactly one of `model`"),
        ({"detectors": [{"name": "x"}]}, r"needs exactly one of `model`"),
        ({"detectors": [{"name": "x", "model": "m", "overrides": ["a=1"]}]}, r"only apply to a `recipe`"),
        ({"detectors": [{"name": "a b", "model": "m"}]}, r"may only hold letters"),
        ({"detectors": [{"name": "x", "model": "m"}, {"name": "x", "model": "n"}]}, r"unique; repeated: x"),
        ({"detectors": []}, r"detectors: List should have at least 1 item"),
        ({"tasks": {"robustness": {"degradations": ["jpeg:101"]}}}, r"jpeg quality must be in 1\.\.100"),
        ({"tasks": {"robustness": {"degradations": ["blur:1", "blur:1.0"]}}}, r"listed twice"),
        ({"tasks": {"robustness": {"degradations": ["jpeg:75"], "detectors": ["nope"]}}},
         r"unknown detector\(s\) \['nope'\]"),
        ({"tasks": {"preprocessing": {"modes": ["crop"]}}}, r"tasks\.preprocessing\.modes\.0: Input should be"),
        ({"tasks": {"augmentation": {"detectors": ["npr"]}}}, r"they need a `recipe`; \['npr'\]"),
        ({"tasks": {"augmentation": {"detectors": ["cnn"], "variants": ["sharpen"]}}}, r"variants\.0"),
        ({"tasks": {"generalization": None}}, r"has no task"),
        ({"calibration": {"holdout": 0}}, r"calibration needs real images"),
        ({"calibration": {"fpr": 1.5}}, r"calibration\.fpr"),
    ],
)
def test_validation_errors_are_clear(tmp_path, change, message):
    with pytest.raises(ProtocolError, match=message) as info:
        protocol_from_dict(_base(**change), base=tmp_path, source="protocol p.yaml")
    assert str(info.value).startswith("protocol p.yaml is invalid:")


def test_file_and_override_errors(tmp_path):
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(bad)
    path = _write(tmp_path, _base())
    with pytest.raises(ProtocolError, match="not of the form key=value"):
        load_protocol(path, ["data.test"])
    with pytest.raises(ProtocolError, match=r"no entry named 'effort'; entries: \['npr', 'cnn'\]"):
        load_protocol(path, ["detectors.effort.model=x"])
    with pytest.raises(ProtocolError, match="index 5 is past the end"):
        load_protocol(path, ["detectors.5.model=x"])


def test_augmentation_overrides():
    off = AugmentConfig()
    assert augmentation_overrides("none", 0.5, off) == []  # the recipe itself: not retrained
    blur = augmentation_overrides("blur", 0.5, off)
    assert "augment.blur_prob=0.5" in blur and "augment.jpeg_prob=0.0" in blur and "augment.blur_jpeg_prob=0.0" in blur
    cnnspot = AugmentConfig(blur_jpeg_prob=0.5)  # Blur+JPEG(0.5) recipe
    none = augmentation_overrides("none", 0.5, cnnspot)
    assert "augment.blur_prob=0.0" in none and "augment.jpeg_prob=0.0" in none
    assert augmentation_overrides("all", 0.1, off).count("augment.mask_prob=0.1") == 1
    with pytest.raises(ValueError, match="unknown augmentation variant"):
        augmentation_overrides("sharpen", 0.5)


def test_planned_conditions(tmp_path):
    p = protocol_from_dict(_base(tasks={
        "generalization": {"detectors": ["npr"]},
        "robustness": {"degradations": ["jpeg:75"], "detectors": ["cnn"]},
        "preprocessing": {"modes": ["center_crop", "resize"]},
        "augmentation": {"detectors": ["cnn"], "variants": ["none", "blur"], "degradations": ["blur:1"]},
    }), base=tmp_path)
    roles = {"npr": "main", "cnn": "main", "cnn@blur": "augmentation"}
    modes = {"npr": "center_crop", "cnn": "resize", "cnn@blur": "resize"}
    got = {(x.detector, x.condition, x.mode, x.calibration) for x in planned_conditions(p, roles, modes)}
    assert got == {
        ("npr", "clean", None, True), ("npr", "clean|pre=resize", "resize", True),
        ("cnn", "clean", None, True), ("cnn", "jpeg:75", None, False), ("cnn", "clean|pre=center_crop", "center_crop",
                                                                          True),
        ("cnn@blur", "clean", None, True), ("cnn@blur", "blur:1", None, False),
    }
    assert condition_name("jpeg:75", "resize", "center_crop") == "jpeg:75|pre=resize"
    assert condition_name("none", None, "center_crop") == "clean"


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "protocols").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_protocols_validate(path):
    p = load_protocol(path)
    assert p.detectors and p.digest()
    for d in p.detectors:
        if isinstance(d.recipe, str):
            assert Path(d.recipe).is_file(), f"{path.name}: recipe {d.recipe} does not exist"


def test_training_data_and_recipe_overrides_reach_every_recipe(tmp_path, monkeypatch):
    from aigi.benchmark.run import _recipe_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"detector": "npr", "data": {"train": "elsewhere", "layout": "auto"},
                                      "max_steps": 5}))
    data = _base(training_data={"train": "progan", "layout": "progan", "subsets": ["car", "cat"]},
                 recipe_overrides=["max_steps=2", "data.val=val-data"])
    data["detectors"] = [{"name": "a", "recipe": str(recipe)},
                         {"name": "b", "recipe": str(recipe), "overrides": {"max_steps": 7}}]
    path = _write(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    p = load_protocol(path, ["training_data.train=cli-train"])
    a = _recipe_config(p.detector("a"), tmp_path, [], p.shared_recipe_overrides())
    b = _recipe_config(p.detector("b"), tmp_path, [], p.shared_recipe_overrides())
    assert a.data.train == str(tmp_path / "cli-train")  # a command-line path: relative to the cwd
    assert a.data.val == str(tmp_path / "sub" / "val-data")  # a path in the file: relative to the file
    assert (a.data.layout, a.data.subsets, a.max_steps) == ("progan", ["car", "cat"], 2)
    assert b.max_steps == 7  # a detector's own overrides come last
