"""`accelerate launch` with 2 CPU processes writes the same metrics.json and scores.csv as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aigi
from aigi.evaluate import evaluate


def test_two_process_eval_writes_identical_files(image_tree, tmp_path):
    # ~15-25 s on a shared 2-core machine: three Python processes import torch/transformers
    broken = image_tree / "a" / "0_real" / "zz_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")  # its skip entry must be gathered too
    model = tmp_path / "model"
    aigi.create_detector("univfd", backbone="tiny").save_pretrained(model)
    # one process (in this one, single-threaded like each launched process)
    evaluate(model, image_tree, output=tmp_path / "one", batch_size=4, threads=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "aigi.cli", "eval", str(image_tree), "--model", str(model), "--output", str(tmp_path / "two"),
         "--batch-size", "4"],
        env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("wrote ") == 1  # only the main process reports
    one_m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two_m = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one_m == two_m  # no field differs, not even the skipped list's order
    assert len(one_m["skipped"]) == 1 and one_m["mean"]["n_real"] + one_m["mean"]["n_fake"] == 32
    assert (tmp_path / "one" / "scores.csv").read_bytes() == (tmp_path / "two" / "scores.csv").read_bytes()
