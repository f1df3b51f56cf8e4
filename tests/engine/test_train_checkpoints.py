"""Damaged training checkpoints, history after resume, the first checkpoint layout, validation."""

from __future__ import annotations

import json
import pickle
import shutil
from argparse import Namespace
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from aigi.cli import app
from aigi.train import TrainConfig, train
from aigi.train.checkpoint import TrainCheckpointError, latest_checkpoint

OVERRIDES = {"blocks": [1, 1], "width": 4, "preprocess.size": 32, "preprocess.resize_to": 36}


def recipe(train_dir: Path, **extra) -> dict:
    base = {"detector": "npr", "overrides": OVERRIDES, "data": {"train": str(train_dir)},
            "optimizer": {"name": "adam", "lr": 1e-2}, "batch_size": 4, "max_steps": 4,
            "checkpoint_every": 1, "keep_checkpoints": 3, "log_every": 1}
    base.update(extra)
    return base


def cfg_of(train_dir: Path, **extra) -> TrainConfig:
    return TrainConfig.model_validate(recipe(train_dir, **extra))


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def _garbage(f: Path) -> None:
    f.write_bytes(b"\x00\x13garbage" * 50)


def _empty(f: Path) -> None:
    f.write_bytes(b"")


def _pickle(f: Path) -> None:
    f.write_bytes(pickle.dumps(Namespace(a=1)))


DAMAGES = [
    ("model.safetensors", _truncate, "cannot be read"),
    ("model.safetensors", _garbage, "cannot be read"),
    ("optimizer.bin", _truncate, "cannot be read"),
    ("scheduler.bin", _garbage, "is not a file of tensors and plain data"),
    ("optimizer.bin", _pickle, "is not a file of tensors and plain data"),
    ("random_states_0.pkl", _pickle, "is not a file of tensors and plain data"),
    ("random_states_0.pkl", _truncate, "cannot be read"),
    ("trainer_state.json", _garbage, "cannot be read"),
    ("trainer_state.json", lambda f: f.write_text("[1, 2]"), "holds a JSON list"),
    ("model.safetensors", lambda f: f.unlink(), "is missing"),
    ("scheduler.bin", _empty, "cannot be read (EOFError"),  # click turned this EOFError into a bare "Aborted!"
    ("model.safetensors", _empty, "cannot be read"),
]


@pytest.fixture(scope="module")
def _pristine(tmp_path_factory, make_image_tree) -> tuple[Path, Path]:
    """Images and a run stopped after 3 steps with checkpoints at steps 1, 2 and 3 (trained once)."""
    root = tmp_path_factory.mktemp("pristine")
    data = make_image_tree(root / "data")
    train(cfg_of(data), root / "run", progress=False, stop_after=3)
    assert latest_checkpoint(root / "run").name == "step-00000003"
    return data, root / "run"


@pytest.fixture
def image_tree(_pristine) -> Path:
    return _pristine[0]


@pytest.fixture
def interrupted(_pristine, tmp_path) -> Path:
    """A fresh copy of the interrupted run, for a test to damage."""
    return Path(shutil.copytree(_pristine[1], tmp_path / "run"))


@pytest.mark.parametrize(("name", "damage", "reason"), DAMAGES, ids=[f"{n}-{d.__name__}" for n, d, _ in DAMAGES])
def test_a_damaged_last_checkpoint_is_named_with_the_previous_one(image_tree, interrupted, name, damage, reason):
    bad = interrupted / "checkpoints" / "step-00000003"
    damage(bad / name)
    with pytest.raises(TrainCheckpointError) as info:
        train(cfg_of(image_tree), interrupted, progress=False, resume=True)
    msg = str(info.value)
    assert f"checkpoint {bad} is damaged: {bad / name} {reason}" in msg
    assert f"--resume-from {interrupted / 'checkpoints' / 'step-00000002'}" in msg
    assert "weights_only=False" not in msg


def test_an_empty_checkpoint_folder_is_named(image_tree, interrupted):
    empty = interrupted / "checkpoints" / "step-00000007"
    empty.mkdir()
    with pytest.raises(TrainCheckpointError, match=r"step-00000007 is damaged: .*trainer_state.json is missing "
                                                   r"\(the folder is empty\)\. The newest intact checkpoint is "
                                                   r".*step-00000003 \(step 3\)"):
        train(cfg_of(image_tree), interrupted, progress=False, resume=True)


def test_resume_from_the_previous_checkpoint_is_exact_and_sets_the_damaged_one_aside(image_tree, interrupted, tmp_path):
    train(cfg_of(image_tree), tmp_path / "straight", progress=False)
    _garbage(interrupted / "checkpoints" / "step-00000003" / "optimizer.bin")
    res = train(cfg_of(image_tree), interrupted, progress=False,
                resume_from=interrupted / "checkpoints" / "step-00000002")
    assert res.steps == 4 and res.resumed_from.name == "step-00000002"
    assert (interrupted / "checkpoints" / "step-00000003.set-aside").is_dir()
    assert same_weights(tmp_path / "straight", interrupted)


def test_no_intact_checkpoint_left_says_so(image_tree, tmp_path):
    train(cfg_of(image_tree, keep_checkpoints=1), tmp_path / "run", progress=False, stop_after=2)
    _truncate(tmp_path / "run" / "checkpoints" / "step-00000002" / "model.safetensors")
    with pytest.raises(TrainCheckpointError, match="No intact checkpoint is left"):
        train(cfg_of(image_tree, keep_checkpoints=1), tmp_path / "run", progress=False, resume=True)


def test_cli_reports_a_damaged_checkpoint_without_a_traceback(image_tree, interrupted, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe(image_tree)))
    _empty(interrupted / "checkpoints" / "step-00000003" / "scheduler.bin")
    res = CliRunner().invoke(app, ["train", str(path), "-o", str(interrupted), "--resume"])
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())
    assert "is damaged" in out and "scheduler.bin" in out and "--resume-from" in out
    assert "Traceback" not in out and "weights_only=False" not in out and "Aborted" not in out
    res = CliRunner().invoke(app, ["train", str(path), "-o", str(interrupted), "--resume-from",
                                   str(interrupted / "checkpoints" / "step-00000002")])
    assert res.exit_code == 0, res.output


def test_history_after_a_kill_and_resume_has_each_step_once(image_tree, tmp_path):
    cfg = cfg_of(image_tree, checkpoint_every=2)
    train(cfg, tmp_path / "run", progress=False, stop_after=3)  # checkpoints at 2 and 3, history 1..3
    # as if killed during step 3's save: the last checkpoint is step 2, the history reached 3
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000003")
    with (tmp_path / "run" / "history.jsonl").open("a") as fh:
        fh.write('{"step": 4, "lo')  # a line cut by the kill
    train(cfg, tmp_path / "run", progress=False, resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_the_first_checkpoint_layout_still_resumes_exactly(image_tree, tmp_path):
    """A run checkpointed as model.pt/optimizer.pt/scheduler.pt/rng.pt before the change continues."""
    from accelerate.utils import load

    cfg = cfg_of(image_tree, checkpoint_every=100)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "run", progress=False, stop_after=2)
    ck = latest_checkpoint(tmp_path / "run")
    rng = load(ck / "random_states_0.pkl")
    torch.save(load_file(ck / "model.safetensors"), ck / "model.pt")
    torch.save(torch.load(ck / "optimizer.bin", weights_only=True), ck / "optimizer.pt")
    torch.save(torch.load(ck / "scheduler.bin", weights_only=True), ck / "scheduler.pt")
    torch.save({"torch": rng["torch_manual_seed"]}, ck / "rng.pt")
    state = json.loads((ck / "trainer_state.json").read_text())
    state = {k: state[k] for k in ("step", "epoch", "batch_in_epoch", "recipe_sha256")}
    state["python_random"] = [rng["random_state"][0], list(rng["random_state"][1]), rng["random_state"][2]]
    (ck / "trainer_state.json").write_text(json.dumps(state))
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        (ck / name).unlink()
    res = train(cfg, tmp_path / "run", progress=False, resume=True)
    assert res.steps == 4
    assert same_weights(tmp_path / "straight", tmp_path / "run")


def test_validation_every_epoch_leaves_training_unchanged(image_tree, tmp_path):
    # 32 images / batch 8 = 4 steps per epoch: validation after step 4 (epoch end) and step 6 (the end)
    plain = cfg_of(image_tree, batch_size=8, max_steps=6, checkpoint_every=100)
    with_val = cfg_of(image_tree, batch_size=8, max_steps=6, checkpoint_every=100,
                      data={"train": str(image_tree), "val": str(image_tree / "a")})
    train(plain, tmp_path / "plain", progress=False)
    res = train(with_val, tmp_path / "val", progress=False)
    assert [r["step"] for r in res.validation] == [4, 6]
    for r in res.validation:
        assert r["val_images"] == 16 and 0.0 <= r["val_auroc"] <= 1.0 and 0.0 <= r["val_acc"] <= 1.0
    lines = [json.loads(x) for x in (tmp_path / "val" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "val_auroc" in r] == [4, 6]
    summary = json.loads((tmp_path / "val" / "training.json").read_text())
    assert summary["validation"]["step"] == 6
    assert same_weights(tmp_path / "plain", tmp_path / "val")  # scoring does not disturb training


def test_validation_is_resumed_without_repeats(image_tree, tmp_path):
    cfg = cfg_of(image_tree, batch_size=8, max_steps=6, checkpoint_every=100,
                 data={"train": str(image_tree), "val": str(image_tree / "b")})
    train(cfg, tmp_path / "run", progress=False, stop_after=5)
    train(cfg, tmp_path / "run", progress=False, resume=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "val_auroc" in r] == [4, 6]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_validation_data_needs_both_labels(image_tree, tmp_path, make_image_tree):
    reals = make_image_tree(tmp_path / "val", subsets=("a",), per_class=2)
    shutil.rmtree(reals / "a" / "1_fake")
    cfg = cfg_of(image_tree, data={"train": str(image_tree), "val": str(reals)})
    with pytest.raises(ValueError, match=r"validation data .* needs real \(0\) and fake \(1\) images; found only label 0"):
        train(cfg, tmp_path / "run", progress=False)
