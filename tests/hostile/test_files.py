"""Hostile files and folders (issue 13 items 1, 2, 4, 5, 9): loops, odd names, unreadable
folders, broken links, FIFOs, truncated JPEGs, bombs, manifests that point outside."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from aigi.data.io import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from aigi.data.layouts import LayoutError, collect_images, load_samples, walk_files
from aigi.data.names import markup_name, name_to_text, text_to_name

from .conftest import BAD_BYTES_NAME, jpeg_bytes, png_bytes, write


def _tree(root: Path, per_class: int = 3) -> Path:
    for label in ("0_real", "1_fake"):
        for i in range(per_class):
            write(root / "sd14" / label / f"{i}.png", png_bytes(seed=i))
    return root


# -- item 1: a symlink loop must not relabel fakes as reals ------------------------------
def test_symlink_loop_is_cut_reported_and_labels_stay(tmp_path):
    data = _tree(tmp_path / "DATA")
    os.symlink("..", data / "sd14" / "0_real" / "loop")
    skipped: list[tuple[str, str]] = []
    samples = load_samples(data, skipped=skipped)
    labels = [s.label for s in samples]
    assert labels.count(0) == 3 and labels.count(1) == 3  # not 3 + 3 fakes counted as real
    assert all(s.path.parent.name == ("0_real" if s.label == 0 else "1_fake") for s in samples)
    assert len(skipped) == 1 and "loop" in skipped[0][1] and skipped[0][0].endswith("loop")


def test_link_into_the_other_label_folder_counts_there_only(tmp_path):
    data = _tree(tmp_path / "DATA")
    os.symlink("../1_fake", data / "sd14" / "0_real" / "fakes")
    samples = load_samples(data)
    assert [s.label for s in samples].count(0) == 3
    assert [s.label for s in samples].count(1) == 3


def test_shared_real_folder_linked_into_two_subsets_counts_in_each(tmp_path):
    for i in range(2):
        write(tmp_path / "reals" / f"r{i}.png", png_bytes(seed=i))
    for sub in ("a", "b"):
        (tmp_path / "d" / sub).mkdir(parents=True)
        os.symlink(tmp_path / "reals", tmp_path / "d" / sub / "0_real")
        write(tmp_path / "d" / sub / "1_fake" / "f.png", png_bytes(seed=9))
    samples = load_samples(tmp_path / "d")
    assert sorted((s.subset, s.label) for s in samples) == [("a", 0)] * 2 + [("a", 1)] + [("b", 0)] * 2 + [("b", 1)]


def test_detect_walk_cuts_loops_and_counts_a_file_once(tmp_path):
    write(tmp_path / "p" / "a.png", png_bytes())
    os.symlink("..", tmp_path / "p" / "up")
    os.symlink("a.png", tmp_path / "p" / "again.png")
    files, skipped = collect_images([tmp_path / "p", tmp_path / "p" / "a.png"])
    assert [f.name for f in files] == ["a.png"]
    assert len(skipped) == 1 and "loop" in skipped[0][1]


# -- item 4: what cannot be read is reported ----------------------------------------------
def test_broken_link_and_fifo_are_reported(tmp_path):
    data = _tree(tmp_path / "DATA")
    os.symlink("nowhere.png", data / "sd14" / "0_real" / "gone.png")
    os.mkfifo(data / "sd14" / "1_fake" / "pipe.png")  # opening it to decode would block
    skipped: list[tuple[str, str]] = []
    samples = load_samples(data, skipped=skipped)
    assert len(samples) == 6
    reasons = sorted(m for _, m in skipped)
    assert len(reasons) == 2
    assert "broken symbolic link" in reasons[0] and "gone.png" in reasons[0]
    assert "not a regular file" in reasons[1] and "pipe.png" in reasons[1]
    files, skipped2 = collect_images([data])
    assert len(files) == 6 and len(skipped2) == 2


def test_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    """Same code path as a mode-000 folder (root ignores modes, so it is simulated here)."""
    data = _tree(tmp_path / "DATA")
    locked = data / "sd14" / "0_real" / "private"
    write(locked / "x.png", png_bytes())
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    for found in (load_samples(data, skipped=(sk := [])), collect_images([data], sk2 := [])[0]):
        assert len(found) == 6
    for lst in (sk, sk2):
        assert len(lst) == 1 and "private" in lst[0][1] and "Permission denied" in lst[0][1]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads mode-000 folders")
def test_mode_000_folder_is_reported(tmp_path):
    data = _tree(tmp_path / "DATA")
    locked = data / "sd14" / "1_fake" / "locked"
    write(locked / "x.png", png_bytes())
    locked.chmod(0)
    try:
        skipped: list[tuple[str, str]] = []
        assert len(load_samples(data, skipped=skipped)) == 6
        assert len(skipped) == 1 and "locked" in skipped[0][1]
    finally:
        locked.chmod(0o755)


def test_no_images_error_says_what_could_not_be_read(tmp_path):
    (tmp_path / "d" / "0_real").mkdir(parents=True)
    os.symlink("nowhere", tmp_path / "d" / "0_real" / "x.png")
    with pytest.raises(LayoutError, match="could not be read.*broken symbolic link"):
        load_samples(tmp_path / "d")


# -- item 2: names that are not UTF-8 -----------------------------------------------------
def test_non_utf8_name_is_found_and_round_trips(tmp_path):
    root = os.fsencode(tmp_path / "p")
    for name in (b"a.png", BAD_BYTES_NAME, b"c.png"):
        write(os.path.join(root, name), png_bytes())
    files, skipped = collect_images([tmp_path / "p"])
    assert len(files) == 3 and not skipped
    odd = files[1]
    text = name_to_text(odd)
    text.encode("utf-8")  # writable anywhere
    assert text.endswith("b_\\xff.png")
    assert os.fsencode(text_to_name(text)) == os.path.join(root, BAD_BYTES_NAME)
    assert decode_image(text_to_name(text)).size == (40, 40)


def test_manifest_names_a_non_utf8_file_by_its_text_form(tmp_path):
    write(os.path.join(os.fsencode(tmp_path), BAD_BYTES_NAME), png_bytes())
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": name_to_text(BAD_BYTES_NAME), "label": 1}) + "\n")
    (s,) = load_samples(tmp_path / "m.jsonl")
    assert os.fsencode(s.path.name) == BAD_BYTES_NAME and s.path.is_file()


# -- item 3: names are not markup ---------------------------------------------------------
def test_markup_name_keeps_brackets_visible():
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(f"[yellow]skipped[/] {markup_name('[edited] holiday.jpg')} {markup_name('d/[/b].jpg')}")
    assert "skipped [edited] holiday.jpg d/[/b].jpg" in console.export_text()


# -- item 9: manifests stay in their folder -----------------------------------------------
@pytest.mark.parametrize("bad", ["../../../../etc/passwd", "/etc/passwd", "sub/../../x.png"])
def test_manifest_row_outside_its_folder_is_refused(tmp_path, bad):
    (tmp_path / "m.csv").write_text(f"path,label\nok.png,0\n{bad},1\n")
    with pytest.raises(LayoutError, match=r"line 3.*outside the manifest's folder.*--allow-outside"):
        load_samples(tmp_path / "m.csv")
    rows = load_samples(tmp_path / "m.csv", allow_outside=True)
    assert len(rows) == 2


# -- item 5: truncated JPEGs, bombs --------------------------------------------------------
def test_jpeg_cut_short_with_an_end_marker_fails_with_name_and_reason(tmp_path):
    data = jpeg_bytes(256)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 4] + b"\xff\xd9")
    with pytest.raises(ImageDecodeError) as err:
        decode_image(bad)
    assert err.value.reason == "truncated" and str(bad) in str(err.value)
    # the same bytes uploaded
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(bad.read_bytes(), name="upload.jpg")


@pytest.mark.parametrize("kw", [{}, {"subsampling": 0}, {"restart_marker_blocks": 4}, {"progressive": True}])
def test_whole_jpegs_decode_exactly_as_pillow_does(kw):
    data = jpeg_bytes(160, **kw)
    ref = np.asarray(Image.open(__import__("io").BytesIO(data)).convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(data)), ref)


@pytest.mark.parametrize("kw", [{}, {"subsampling": 0}, {"restart_marker_blocks": 4}, {"progressive": True}])
@pytest.mark.parametrize("frac", [0.25, 0.5])
def test_cut_jpegs_fail_in_every_flavour(kw, frac):
    data = jpeg_bytes(160, **kw)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: int(len(data) * frac)] + b"\xff\xd9")


def test_a_module_turning_on_load_truncated_images_does_not_let_cut_files_pass(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = png_bytes(64)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ImageDecodeError, match="truncated"):
            decode_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert any("LOAD_TRUNCATED_IMAGES" in str(w.message) for w in seen)


def _jpeg_header_only(width: int, height: int) -> bytes:
    """A tiny JPEG whose header declares width x height (a 'bomb' of a few hundred bytes)."""
    small = jpeg_bytes(16)
    i = small.index(b"\xff\xc0")
    return small[: i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + small[i + 9 :]


def test_9000_square_header_bomb_is_refused_by_the_one_pixel_limit():
    bomb = _jpeg_header_only(9000, 9000)
    assert len(bomb) < 1000 and 9000 * 9000 > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageDecodeError) as err:
        decode_image(bomb, name="bomb.jpg")
    assert err.value.reason == "too_large" and "bomb.jpg" in str(err.value)


def test_one_pixel_limit_on_every_path():
    import inspect

    from aigi.data.dataset import ImageDataset
    from aigi.serve.settings import ServeSettings

    assert inspect.signature(decode_image).parameters["max_pixels"].default == DEFAULT_MAX_PIXELS
    assert inspect.signature(ImageDataset).parameters["max_pixels"].default == DEFAULT_MAX_PIXELS
    assert ServeSettings().max_pixels == DEFAULT_MAX_PIXELS


def test_walk_files_on_a_file_or_missing_folder_reports(tmp_path):
    write(tmp_path / "f.png", png_bytes())
    sk: list[tuple[str, str]] = []
    assert walk_files(tmp_path / "f.png", sk) == [] and "not a folder" in sk[0][1]
    assert walk_files(tmp_path / "nope", sk) == [] and "No such file" in sk[1][1]


def test_png_whose_data_cannot_fill_its_size_is_truncated_not_black():
    from .test_server import png_of_size

    with pytest.raises(ImageDecodeError) as err:
        decode_image(png_of_size(2000, 2000, rows=1), name="short.png")
    assert err.value.reason == "truncated" and "short.png" in str(err.value)
    # the most compressible whole image (all black, zlib level 9) still decodes
    import struct
    import zlib

    raw = (b"\x00" * (1 + 3 * 2000)) * 2000
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2000, 2000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    assert decode_image(png).size == (2000, 2000)


def test_genimage_link_to_a_folder_named_ai_outside_the_data_keeps_its_label(tmp_path):
    """Only an ai/nature folder under train/val labels a file: a home folder called ai does not."""
    for i in range(2):
        write(tmp_path / "home" / "ai" / "photos" / f"p{i}.png", png_bytes(seed=i))
    data = tmp_path / "GenImage" / "sdv14" / "val"
    write(data / "ai" / "f.png", png_bytes(seed=7))
    (data / "nature").mkdir(parents=True)
    os.symlink(tmp_path / "home" / "ai" / "photos", data / "nature" / "mine")
    samples = load_samples(tmp_path / "GenImage")
    assert sorted(s.label for s in samples) == [0, 0, 1]
