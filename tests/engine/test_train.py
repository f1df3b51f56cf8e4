"""The training loop: recipes, exact resume, atomic checkpoints, interrupts, several processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from aigi.train import TrainConfig, load_recipe, train
from aigi.train.loop import GlobalBatchSampler, latest_checkpoint

REPO = Path(__file__).resolve().parents[2]


def npr_recipe(data: Path, **extra) -> TrainConfig:
    base = {
        "detector": "npr",
        "overrides": {"blocks": [1, 1], "width": 4, "preprocess.size": 32, "preprocess.resize_to": 36},
        "data": {"train": str(data)},
        "augment": {"blur_jpeg_prob": 0.5, "mask_prob": 0.2},
        "optimizer": {"name": "adam", "lr": 1e-2},
        "scheduler": {"name": "step", "every": 1, "unit": "step", "gamma": 0.5},
        "batch_size": 4,
        "max_steps": 4,
        "checkpoint_every": 100,
        "log_every": 1,
    }
    base.update(extra)
    return TrainConfig.model_validate(base)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def test_recipe_needs_a_length(image_tree):
    with pytest.raises(ValueError, match="epochs` or `max_steps"):
        TrainConfig.model_validate({"detector": "npr", "data": {"train": str(image_tree)}})


def test_recipe_rejects_unknown_fields(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("detector: npr\ndata: {train: x}\nmax_steps: 1\nlearning_rate: 3\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_recipe(p)


def test_recipe_paths_and_overrides(tmp_path):
    p = tmp_path / "sub" / "r.yaml"
    p.parent.mkdir()
    p.write_text(yaml.safe_dump({"detector": "npr", "data": {"train": "../imgs"}, "max_steps": 3}))
    cfg = load_recipe(p, ["max_steps=7", "optimizer.lr=0.5", "overrides.preprocess.size=64"])
    assert cfg.data.train == str((tmp_path / "imgs").resolve())
    assert cfg.max_steps == 7 and cfg.optimizer.lr == 0.5
    assert cfg.overrides == {"preprocess.size": 64}


def test_sampler_is_seeded_and_splits_global_batches():
    one = list(GlobalBatchSampler(10, 4, seed=3))
    assert one == list(GlobalBatchSampler(10, 4, seed=3)) and len(one) == 2
    r0 = list(GlobalBatchSampler(10, 4, seed=3, rank=0, world=2))
    r1 = list(GlobalBatchSampler(10, 4, seed=3, rank=1, world=2))
    assert [a + b for a, b in zip(r0, r1)] == one
    s = GlobalBatchSampler(10, 4, seed=3)
    s.set_epoch(1)
    assert list(s) != one  # another epoch, another order


def test_resume_inside_an_epoch_skips_batches_without_loading_them():
    from accelerate import skip_first_batches
    from torch.utils.data import DataLoader

    loaded = []

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 12

        def __getitem__(self, i):
            loaded.append(i)
            return i

    sampler = GlobalBatchSampler(12, 4, seed=1)
    loader = DataLoader(Data(), batch_sampler=sampler, collate_fn=list)
    full = list(loader)
    loaded.clear()
    assert list(skip_first_batches(loader, 2)) == full[2:]
    assert sorted(loaded) == sorted(full[2])  # the skipped batches were never decoded


def test_train_writes_a_loadable_detector(image_tree, tmp_path):
    import aigi

    res = train(npr_recipe(image_tree), tmp_path / "run", progress=False)
    assert res.steps == 4 and not res.interrupted
    for name in ("config.json", "model.safetensors", "training.json", "train_config.yaml", "history.jsonl"):
        assert (tmp_path / "run" / name).is_file(), name
    model = aigi.load_detector(tmp_path / "run")
    assert model.method == "npr" and model.config.preprocess.size == 32


def test_resume_is_exact(image_tree, tmp_path):
    """2 steps + resume + 2 steps gives the same weights as 4 steps, bit for bit."""
    cfg = npr_recipe(image_tree)
    train(cfg, tmp_path / "straight", progress=False)
    part = train(cfg, tmp_path / "resumed", progress=False, stop_after=2)
    assert part.interrupted and part.steps == 2
    assert latest_checkpoint(tmp_path / "resumed").name == "step-00000002"
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    rest = train(cfg, tmp_path / "resumed", progress=False, resume=True)
    assert rest.steps == 4
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_across_epochs_is_exact(image_tree, tmp_path):
    # 32 images / batch 8 = 4 steps per epoch; stop inside epoch 2
    cfg = npr_recipe(image_tree, batch_size=8, max_steps=6, checkpoint_every=2)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "resumed", progress=False, stop_after=5)
    train(cfg, tmp_path / "resumed", progress=False, resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_a_run_without_resume(image_tree, tmp_path):
    cfg = npr_recipe(image_tree)
    train(cfg, tmp_path / "run", progress=False, stop_after=1)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, tmp_path / "run", progress=False)


def test_resume_refuses_a_different_recipe(image_tree, tmp_path):
    train(npr_recipe(image_tree), tmp_path / "run", progress=False, stop_after=1)
    other = npr_recipe(image_tree, seed=5)
    with pytest.raises(ValueError, match="different recipe"):
        train(other, tmp_path / "run", progress=False, resume=True)


def test_ctrl_c_saves_a_checkpoint_after_the_step_and_resume_is_exact(image_tree, tmp_path, monkeypatch):
    """A real SIGINT during step 3: the step finishes, step-3 is saved, and resuming equals a straight run."""
    import signal

    cfg = npr_recipe(image_tree)
    train(cfg, tmp_path / "straight", progress=False)
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def step_then_ctrl_c(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_ctrl_c)
    res = train(cfg, tmp_path / "run", progress=False)
    monkeypatch.undo()
    assert res.interrupted and res.steps == 3
    assert latest_checkpoint(tmp_path / "run").name == "step-00000003"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    train(cfg, tmp_path / "run", progress=False, resume=True)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_are_pruned_and_atomic(image_tree, tmp_path):
    cfg = npr_recipe(image_tree, max_steps=4, checkpoint_every=1, keep_checkpoints=2)
    train(cfg, tmp_path / "run", progress=False, stop_after=3)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000003"]  # no temporary folders left behind
    files = sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "step-00000003").iterdir())
    assert files == ["model.safetensors", "optimizer.bin", "random_states_0.pkl", "scheduler.bin",
                     "trainer_state.json"]  # written by Accelerator.save_state, plus the trainer state


def test_broken_training_image_is_skipped_and_reported(image_tree, tmp_path):
    bad = image_tree / "a" / "0_real" / "zzz.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = train(npr_recipe(image_tree, max_steps=9), tmp_path / "run", progress=False)
    assert res.steps == 9
    assert str(bad) in res.skipped_files and "truncated" in res.skipped_files[str(bad)]


@pytest.mark.slow
def test_two_processes_train_the_same_model(image_tree, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo) equals one process at the same global batch."""
    recipe = {
        "detector": "univfd",
        "overrides": {"backbone": "tiny"},
        "data": {"train": str(image_tree), "val": str(image_tree)},
        "optimizer": {"name": "adam", "lr": 1e-2},
        "batch_size": 8,
        "max_steps": 3,
        "checkpoint_every": 2,
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([sys.executable, "-m", "aigi.cli", "train", str(path), "-o", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "aigi.cli", "train",
              str(path)]
    two = subprocess.run(launch + ["-o", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    train_info = yaml.safe_load((tmp_path / "two" / "training.json").read_text())
    assert train_info["processes"] == 2
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # validation at the end: each process scored half of the 32 images, the metrics saw all of them
    for run in ("one", "two"):
        val = json.loads((tmp_path / run / "training.json").read_text())["validation"]
        assert val["step"] == 3 and val["val_images"] == 32, run
    # the checkpoint at step 2 was written by both processes (one RNG file each) and resumes under 2 processes
    ckpt = tmp_path / "two" / "checkpoints" / "step-00000002"
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    shutil.copytree(tmp_path / "two" / "checkpoints", tmp_path / "again" / "checkpoints")
    again = subprocess.run(launch + ["-o", str(tmp_path / "again"), "--resume"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    c = weights(tmp_path / "again")
    assert all(torch.equal(b[k], c[k]) for k in b)
