"""`aigi detect` under `accelerate launch` with 2 CPU processes writes one merged output, equal to one process's."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from aigi.evaluate.runner import detect, merge_parts
from inference_helpers import save_tiny


def _launch(image_tree, model, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "aigi.cli", "detect", str(image_tree), "--model", str(model), "--output", str(out),
         "--batch-size", "4", "--device", "cpu", *extra],
        env=env, capture_output=True, text=True, timeout=300)


def test_two_process_detect_merges_into_one_output_and_resumes(image_tree, tmp_path):
    # ~15-25 s on a shared 2-core machine: three Python processes import torch
    model = save_tiny(tmp_path / "model")
    one, _ = detect(model, [image_tree], output=tmp_path / "one.csv", batch_size=4, device="cpu")
    # a previous run was cut short after 5 rows: resume must score only the rest, across both processes
    lines = (tmp_path / "one.csv").read_bytes().splitlines(keepends=True)
    (tmp_path / "two.csv").write_bytes(b"".join(lines[:6]))
    two = _launch(image_tree, model, tmp_path / "two.csv", "--resume")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("scored 27 image(s)") == 1  # only the main process reports, with every shard's rows
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name) == []  # the parts were merged away
    assert len(one) == 32


def test_merge_appends_each_path_once_in_order(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("path,p_fake,verdict\nb.png,0.5,fake\n")
    (tmp_path / "out.part0.csv").write_text("path,p_fake,verdict\nc.png,0.25,real\nb.png,0.5,fake\n")
    (tmp_path / "out.part1.csv").write_text("path,p_fake,verdict\na.png,0.75,fake\n")
    assert merge_parts(out, {"a.png": 0, "b.png": 1, "c.png": 2}) == 2
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == ["b.png", "a.png", "c.png"] and rows[1]["p_fake"] == "0.75"
    assert not (tmp_path / "out.part0.csv").exists() and not (tmp_path / "out.part1.csv").exists()
