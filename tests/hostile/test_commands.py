"""Hostile input through the commands (issue 13 items 1-4, 9): every name round-trips,
nothing is read as markup, whatever could not be read is listed and the exit code says so."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigi.cli import app
from aigi.data.names import name_to_text, text_to_name
from aigi.evaluate.runner import EXIT_SOME_SKIPPED

from .conftest import BAD_BYTES_NAME, png_bytes, write

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [a if isinstance(a, str) else os.fsdecode(a) for a in args], catch_exceptions=False)


def _odd_folder(root: Path) -> Path:
    raw = os.fsencode(root)
    for i, name in enumerate((b"a.png", BAD_BYTES_NAME, b"c.png")):
        write(os.path.join(raw, name), png_bytes(seed=i))
    return root


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_detect_keeps_every_row_of_a_non_utf8_name_and_resumes(tiny_model, tmp_path, suffix):
    folder = _odd_folder(tmp_path / "p")
    out = tmp_path / f"out{suffix}"
    res = run("detect", "--model", str(tiny_model), str(folder), "--output", str(out))
    assert res.exit_code == 0, res.output
    if suffix == ".csv":
        paths = [r["path"] for r in csv.DictReader(out.open(encoding="utf-8"))]
    else:
        paths = [json.loads(x)["path"] for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(paths) == 3 and paths[1].endswith("b_\\xff.png")
    assert os.fsencode(text_to_name(paths[1])).endswith(BAD_BYTES_NAME)
    res = run("detect", "--model", str(tiny_model), str(folder), "--output", str(out), "--resume")
    assert res.exit_code == 0, res.output
    assert "scored 0 image(s)" in res.output  # all three were recognised as done


def test_detect_table_prints_odd_names_as_they_are(tiny_model, tmp_path, monkeypatch):
    folder = _odd_folder(tmp_path / "p")
    write(folder / "[edited] holiday.png", png_bytes(seed=5))
    write(folder / "d" / "[" / "b].png", png_bytes(seed=6))
    monkeypatch.chdir(tmp_path)  # short relative paths: the table is not cut at 80 columns
    res = run("detect", "--model", str(tiny_model), "p")
    assert res.exit_code == 0, res.output
    assert "[edited] holiday.png" in res.output and "[/b].png" in res.output and "b_\\xff.png" in res.output


def test_eval_with_a_symlink_loop_counts_right_reports_and_exits_3(tiny_model, tmp_path):
    data = tmp_path / "DATA"
    for label in ("0_real", "1_fake"):
        for i in range(4):
            write(data / "sd14" / label / f"{i}.png", png_bytes(seed=i))
    os.symlink("..", data / "sd14" / "0_real" / "loop")
    res = run("eval", "--model", str(tiny_model), str(data), "--output", str(tmp_path / "ev"))
    assert res.exit_code == EXIT_SOME_SKIPPED, res.output
    assert "loop" in res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["mean"]["n_real"] == 4 and metrics["mean"]["n_fake"] == 4
    assert len(metrics["skipped"]) == 1 and "loop" in metrics["skipped"][0]["reason"]


def test_eval_writes_every_row_of_a_non_utf8_name(tiny_model, tmp_path):
    data = tmp_path / "D"
    for label in ("0_real", "1_fake"):
        _odd_folder(data / "s" / label)
    res = run("eval", "--model", str(tiny_model), str(data), "--output", str(tmp_path / "ev"))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "ev" / "scores.csv").open(encoding="utf-8")))
    assert len(rows) == 6
    assert sum(r["path"].endswith("b_\\xff.png") for r in rows) == 2
    assert all(Path(text_to_name(r["path"])).is_file() for r in rows)


def test_eval_broken_link_is_listed_and_exits_3(tiny_model, tmp_path):
    data = tmp_path / "D"
    for label in ("0_real", "1_fake"):
        write(data / "s" / label / "x.png", png_bytes())
    os.symlink("missing.png", data / "s" / "1_fake" / "gone.png")
    res = run("eval", "--model", str(tiny_model), str(data), "--output", str(tmp_path / "ev"))
    assert res.exit_code == EXIT_SOME_SKIPPED and "broken symbolic link" in res.output


def test_eval_manifest_outside_its_folder_needs_allow_outside(tiny_model, tmp_path):
    write(tmp_path / "imgs" / "r.png", png_bytes(seed=1))
    write(tmp_path / "imgs" / "f.png", png_bytes(seed=2))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "list.csv").write_text("path,label\n../imgs/r.png,0\n../imgs/f.png,1\n")
    res = run("eval", "--model", str(tiny_model), str(tmp_path / "m" / "list.csv"), "--output", str(tmp_path / "ev"))
    assert res.exit_code == 1 and "outside the manifest's folder" in res.output
    res = run("eval", "--model", str(tiny_model), str(tmp_path / "m" / "list.csv"), "--output", str(tmp_path / "ev"),
              "--allow-outside")
    assert res.exit_code == 0, res.output


def test_markup_in_a_manifest_subset_is_printed_not_parsed(tiny_model, tmp_path):
    write(tmp_path / "r.png", png_bytes(seed=1))
    write(tmp_path / "f.png", png_bytes(seed=2))
    (tmp_path / "m.csv").write_text("path,label,subset\nr.png,0,[/x]\nf.png,1,[/x]\n")
    res = run("eval", "--model", str(tiny_model), str(tmp_path / "m.csv"), "--output", str(tmp_path / "ev"))
    assert res.exit_code == 0, res.output
    assert "[/x]" in res.output


def test_detect_file_named_directly_that_cannot_be_read_is_skipped_not_fatal(tiny_model, tmp_path):
    write(tmp_path / "good.png", png_bytes())
    os.symlink("nowhere.png", tmp_path / "dangling.png")
    os.mkfifo(tmp_path / "pipe.png")
    res = run("detect", "--model", str(tiny_model), str(tmp_path / "good.png"), str(tmp_path / "dangling.png"),
              str(tmp_path / "pipe.png"))
    assert res.exit_code == EXIT_SOME_SKIPPED, res.output
    assert "scored 1 image(s), skipped 2" in res.output
    assert "broken symbolic link" in res.output and "not a regular file" in res.output


def test_text_form_names_stay_utf8_in_error_messages(tmp_path):
    from aigi.data.io import ImageDecodeError, decode_image

    bad = os.path.join(os.fsencode(tmp_path), BAD_BYTES_NAME)
    write(bad, b"not an image")
    with pytest.raises(ImageDecodeError) as err:
        decode_image(os.fsdecode(bad))
    str(err.value).encode("utf-8")  # printable anywhere
    assert name_to_text(os.fsdecode(bad)) in str(err.value)
