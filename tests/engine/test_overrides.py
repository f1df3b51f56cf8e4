"""The one key=value override parser (aigi.overrides) and its three call sites."""

from __future__ import annotations

import pytest
import yaml

from aigi.detectors import create_detector
from aigi.overrides import OverrideError, apply_overrides, parse_override
from aigi.train import TrainConfig, load_recipe
from aigi.train.config import apply_recipe_overrides


def test_values_are_yaml_scalars_lists_and_mappings():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("x=0.5")[1] == 0.5
    assert parse_override("x=null")[1] is None
    assert parse_override("x=[1, 2]")[1] == [1, 2]
    assert parse_override("x={k: v}")[1] == {"k": "v"}
    assert parse_override("x=a=b")[1] == "a=b"  # only the first '=' splits
    assert parse_override("x=")[1] is None


@pytest.mark.parametrize(("pair", "message"), [
    ("novalue", "not of the form key=value"),
    ("a..b=1", "has an empty part"),
    ("a=[1, 2", "not valid YAML"),
])
def test_malformed_overrides_are_named(pair, message):
    with pytest.raises(OverrideError, match=message) as info:
        parse_override(pair)
    assert repr(pair) in str(info.value)


def test_nested_keys_lists_by_index_and_by_name():
    data = {"a": None, "items": [{"name": "x", "v": 1}, {"name": "y", "v": 2}]}
    apply_overrides(data, ["a.b.c=1", "items.1.v=5", "items.x.v=7"])
    assert data == {"a": {"b": {"c": 1}}, "items": [{"name": "x", "v": 7}, {"name": "y", "v": 5}]}
    with pytest.raises(OverrideError, match=r"no entry named 'z'; entries: \['x', 'y'\]"):
        apply_overrides(data, ["items.z.v=1"])
    with pytest.raises(OverrideError, match="index 4 is past the end of a list of 2"):
        apply_overrides(data, ["items.4.v=1"])
    with pytest.raises(OverrideError, match="'a.b.c' is not a section"):
        apply_overrides(data, ["a.b.c.d=1"])


def test_unknown_keys_are_refused_before_anything_is_set():
    data = {"detector": "npr", "data": {"train": "x"}, "max_steps": 1}
    with pytest.raises(OverrideError, match=r"unknown key 'lrr' in optimizer \(did you mean 'lr'\?\); known keys: "
                                            r"betas, lr, momentum, name, weight_decay"):
        apply_recipe_overrides(data, ["max_steps=3", "optimizer.lrr=0.1"])
    assert data["max_steps"] == 1  # every key is checked before any is set
    with pytest.raises(OverrideError, match="max_steps has no key 'x'"):
        apply_recipe_overrides(data, ["max_steps.x=1"])
    # detector-config overrides keep their dotted key as one entry
    apply_recipe_overrides(data, ["overrides.preprocess.size=64", "data.val=v", "optimizer.betas=[0.5, 0.6]"])
    assert data["overrides"] == {"preprocess.size": 64}
    cfg = TrainConfig.model_validate(data)
    assert cfg.data.val == "v" and cfg.optimizer.betas == (0.5, 0.6)


def test_a_misspelt_recipe_override_names_the_key(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"detector": "npr", "data": {"train": "x"}, "max_steps": 1}))
    with pytest.raises(ValueError, match="unknown key 'max_step' in the top level .*did you mean 'max_steps'"):
        load_recipe(p, ["max_step=3"])


def test_detector_overrides_merge_mappings_and_check_keys():
    det = create_detector("npr", **{"preprocess": {"size": 48}, "preprocess.resize_to": 52, "threshold": 0.3})
    assert det.config.preprocess.size == 48 and det.config.preprocess.resize_to == 52
    assert det.config.threshold == 0.3
    with pytest.raises(ValueError, match=r"unknown key 'sise' in preprocess \(did you mean 'size'\?\)"):
        create_detector("npr", **{"preprocess.sise": 48})
    with pytest.raises(ValueError, match=r"unknown key 'sise' in preprocess"):
        create_detector("npr", preprocess={"sise": 48})
    with pytest.raises(ValueError, match=r"unknown key 'backbone'"):
        create_detector("npr", backbone="tiny")
    clip = create_detector("univfd", backbone="tiny")  # the string shorthand for backbone.source
    assert clip.config.backbone.source == "tiny"


def test_the_shared_layout_type_names_every_layout():
    from typing import get_args

    from aigi.data.layouts import LAYOUTS
    from aigi.overrides import Layout

    assert set(get_args(Layout)) == {"auto", *LAYOUTS}


def test_a_recipe_that_is_not_yaml_names_the_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("detector: [npr\n")
    with pytest.raises(ValueError, match=r"recipe .*r\.yaml is not valid YAML"):
        load_recipe(p)
