"""The synthetic data carries a fingerprint of the code, settings and libraries that made it."""

import json

from aigi.data.synthetic import GENERATORS, MANIFEST, generate_benchmark, generator_fingerprint


def test_fingerprint_is_stored_and_follows_the_settings(tmp_path):
    kw = dict(per_class=1, size=16, generators=["gan"], seed=0)
    generate_benchmark(tmp_path / "a", **kw)
    meta = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert meta["generator_sha256"] == generator_fingerprint(**kw)
    assert {"numpy", "scipy", "pillow", "libjpeg", "zlib"} <= set(meta["libraries"])
    assert generator_fingerprint(**{**kw, "seed": 1}) != meta["generator_sha256"]
    assert generator_fingerprint(**{**kw, "size": 24}) != meta["generator_sha256"]
    # None means every generator, in any order
    every = dict(per_class=1, size=16, seed=0)
    assert generator_fingerprint(generators=None, **every) == generator_fingerprint(
        generators=list(reversed(GENERATORS)), **every)


def test_demo_regenerates_data_made_by_other_generator_code(tmp_path):
    from aigi.demo import ensure_data

    assert ensure_data(tmp_path, quick=True)
    assert not ensure_data(tmp_path, quick=True)  # same code and settings: reused
    manifest = tmp_path / "data" / "quick" / "test" / MANIFEST
    meta = json.loads(manifest.read_text())
    meta["generator_sha256"] = "0" * 64  # as if an older generator had written it
    manifest.write_text(json.dumps(meta))
    assert ensure_data(tmp_path, quick=True)
    assert json.loads(manifest.read_text())["generator_sha256"] != "0" * 64
