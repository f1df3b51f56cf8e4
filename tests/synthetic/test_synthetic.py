"""The built-in benchmark: layout, byte-for-byte determinism, format mix, a clean audit, CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aigi.cli import app
from aigi.data.layouts import load_samples
from aigi.data.synthetic import (
    GENERATORS,
    JPEG_QUALITIES,
    describe_generators,
    encode,
    generate_benchmark,
    image_rng,
    make_image,
)


def _files(root, generators):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for g in generators for p in sorted((root / g).rglob("*")) if p.is_file()}


def test_generators_are_documented_and_draw_images():
    assert len(GENERATORS) >= 5
    assert set(describe_generators()) == set(GENERATORS)
    for name, fn in GENERATORS.items():
        assert describe_generators()[name].endswith(")") or describe_generators()[name].endswith(".")
        img = fn(np.random.default_rng(0), 32)
        assert img.shape == (32, 32, 3) and img.dtype == np.float32 and np.isfinite(img).all(), name


def test_layout_and_manifest(tmp_path):
    root = generate_benchmark(tmp_path / "bench", per_class=4, size=32, generators=["gan", "vq", "inpaint"], seed=5)
    assert sorted(p.name for p in root.iterdir()) == ["gan", "inpaint", "synthetic.json", "vq"]
    for g in ("gan", "vq", "inpaint"):
        for lab in ("0_real", "1_fake"):
            names = sorted(p.name for p in (root / g / lab).iterdir())
            assert [n.split(".")[0] for n in names] == ["00000", "00001", "00002", "00003"]
            assert all(n.endswith((".png", ".jpg")) for n in names)
    samples = load_samples(root)
    assert len(samples) == 24
    assert {s.subset for s in samples} == {"gan", "vq", "inpaint"}
    assert sorted(s.label for s in samples) == [0] * 12 + [1] * 12
    with Image.open(samples[0].path) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    meta = json.loads((root / "synthetic.json").read_text())
    assert (meta["seed"], meta["size"], meta["per_class"]) == (5, 32, 4)
    assert list(meta["generators"]) == ["gan", "vq", "inpaint"]


def test_byte_for_byte_reproducible_and_independent_of_order_and_workers(tmp_path):
    a = generate_benchmark(tmp_path / "a", per_class=3, size=32, generators=["gan", "vq", "inpaint"], seed=7)
    b = generate_benchmark(tmp_path / "b", per_class=3, size=32, generators=["inpaint", "gan"], seed=7, workers=2)
    fa, fb = _files(a, ["gan", "inpaint"]), _files(b, ["gan", "inpaint"])
    assert fa.keys() == fb.keys() and len(fa) == 12
    assert all(fa[k] == fb[k] for k in fa)
    # one image is a pure function of (generator, label, index, size, seed)
    data, suffix = make_image("vq", 1, 2, size=32, seed=7)
    assert (a / "vq" / "1_fake" / f"00002{suffix}").read_bytes() == data
    # another seed gives other images
    c = generate_benchmark(tmp_path / "c", per_class=3, size=32, generators=["gan"], seed=8)
    assert _files(c, ["gan"]) != _files(a, ["gan"])


def test_each_subset_has_its_own_real_images():
    def pixels(g):
        data, _ = make_image(g, 0, 0, size=32, seed=0)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)

    reals = [pixels(g) for g in GENERATORS]
    for i in range(len(reals)):
        for j in range(i + 1, len(reals)):
            assert np.abs(reals[i] - reals[j]).mean() > 5


def test_reals_and_fakes_share_one_file_format_mix():
    # The format stream is separate from the content stream: draw it alone for many images.
    img = np.full((16, 16, 3), 0.5, np.float32)
    allowed = set()
    for q in range(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1):
        buf = io.BytesIO()
        Image.fromarray((img * 255).astype(np.uint8)).save(buf, format="JPEG", quality=q)
        allowed.add(tuple(Image.open(buf).quantization[0]))
    for label in (0, 1):
        kinds = []
        for i in range(300):
            data, suffix = encode(img, image_rng(0, "ldm", label, i)[1])
            kinds.append(suffix)
            if suffix == ".jpg":
                assert tuple(Image.open(io.BytesIO(data)).quantization[0]) in allowed
        share = kinds.count(".jpg") / len(kinds)
        assert 0.42 < share < 0.58, (label, share)


def test_bad_arguments_have_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown generator.*choose from gan"):
        generate_benchmark(tmp_path, generators=["gan", "midjourney"])
    with pytest.raises(ValueError, match="multiple of 8"):
        generate_benchmark(tmp_path, size=30)
    with pytest.raises(ValueError, match="per_class"):
        generate_benchmark(tmp_path, per_class=0)
    with pytest.raises(KeyError, match="unknown generator"):
        make_image("nope", 0, 0)
    root = generate_benchmark(tmp_path / "x", per_class=1, size=16, generators=["gan"])
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_benchmark(root, per_class=1, size=16, generators=["gan"])
    (root / "gan" / "0_real" / "mine.txt").write_text("user file")
    with pytest.raises(FileExistsError, match="did not write"):
        generate_benchmark(root, per_class=1, size=16, generators=["gan"], overwrite=True)
    (root / "gan" / "0_real" / "mine.txt").unlink()
    generate_benchmark(root, per_class=1, size=16, generators=["gan"], seed=1, overwrite=True)
    assert len(list((root / "gan" / "1_fake").iterdir())) == 1


def test_the_audit_calls_every_subset_clean(tmp_path):
    """``aigi audit`` (file attributes and pixel statistics) on 40 images per class and generator at 64 px.

    The verdict (file attributes and the metadata model) must be clean everywhere. The
    global pixel statistics that a lazy detector could threshold must stay weak: AUROC
    below 0.8 in each subset and 0.7 pooled (with 40 + 40 images, a statistic that carries
    nothing has an AUROC standard error of sqrt(81 / (12 * 40 * 40)) = 0.065 (Mann-Whitney),
    so about +-0.13 at 95%). Blockiness is left out of that bar: the
    ``ldm`` (2x nearest up-sampling) and ``vq`` (4-pixel patches) grids step at JPEG's block
    borders too, which is the generator's fingerprint, not a file shortcut.
    """
    from aigi.audit import ALL, audit

    root = generate_benchmark(tmp_path / "b", per_class=40, size=64, seed=11, workers=2)
    res = audit(root, pixels=True, bootstrap=100)
    assert set(res.verdicts) == {*GENERATORS, ALL} and not res.errors
    assert set(res.verdicts.values()) == {"clean"}, res.verdicts
    global_stats = {"grey_mean", "grey_std", "colourfulness", "noise", "hf_energy", "hf_ratio", "bytes_per_pixel"}
    for subset, rows in res.separations.items():
        worst = max((r for r in rows if r.attribute in global_stats), key=lambda r: r.auroc)
        assert worst.auroc < (0.7 if subset == ALL else 0.8), (subset, worst)


def test_cli_synth(tmp_path):
    res = CliRunner().invoke(app, ["synth", str(tmp_path / "s"), "--per-class", "2", "--size", "16",
                                   "--generators", "gan,diffusion", "--seed", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "gan" in res.output and "diffusion" in res.output
    assert len(list((tmp_path / "s" / "diffusion" / "1_fake").iterdir())) == 2
    res = CliRunner().invoke(app, ["synth", str(tmp_path / "t"), "--generators", "nope"])
    assert res.exit_code == 1 and "unknown generator" in res.output
