"""What a user waits for when building Effort: ours against the official code, side by side.

Both sides start from the same CLIP folder on disk (``save_pretrained`` of a random CLIP whose
vision tower is 1024 wide with ``--blocks`` blocks, ViT-L/14's block shape; the text tower is
tiny, which only makes the official side's load cheaper):

* **official**: ``CLIPModel.from_pretrained(folder)`` then the released
  ``apply_svd_residual_to_self_attn(model.vision_model, r=1023)`` (a float32 full SVD per
  attention matrix). The official code is not part of this repository: pass its file with
  ``--official PATH/TO/UniversalFakeDetect_Benchmark/models/clip_models.py`` (from
  github.com/YZY-stack/Effort-AIGI-Detection); ``loralib``, which that file imports but this
  function does not use, is stubbed when it is not installed.
* **ours**: ``create_detector("effort", backbone=folder)`` — load, weight hash, the rank-1
  SVD residuals of the same matrices, the head.

The two are timed in alternation (official, ours, ours, official, ...) in one process after
one untimed warm-up each, so a change of the machine's load hits both; every repetition's
seconds and the load average are recorded. The script also checks what the speed must not
cost: our residual triplet against a float64 full SVD (up to sign) and the official one.

    python benchmarks/bench_effort_build.py --official /path/to/clip_models.py [--blocks 4] [--reps 3]

Writes ``benchmarks/results/effort_build.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _util as U  # noqa: E402


def make_folder(root: Path, blocks: int) -> Path:
    """A CLIP folder (config + safetensors) with a ViT-L/14-shaped vision tower of ``blocks`` blocks."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    vision = dict(hidden_size=1024, intermediate_size=4096, projection_dim=768, num_hidden_layers=blocks,
                  num_attention_heads=16, image_size=224, patch_size=14, hidden_act="quick_gelu")
    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=128, projection_dim=768, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=768))
    folder = root / f"clip-l14-{blocks}blocks"
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def load_official(path: Path) -> types.ModuleType:
    """Import the official ``clip_models.py`` from a file outside this repository."""
    if not path.is_file():
        raise SystemExit(f"--official: {path} is not a file (expected the official clip_models.py)")
    if importlib.util.find_spec("loralib") is None:  # imported at the top of that file, unused here
        sys.modules["loralib"] = types.ModuleType("loralib")
    spec = importlib.util.spec_from_file_location("effort_official_clip_models", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    if not hasattr(mod, "apply_svd_residual_to_self_attn"):
        raise SystemExit(f"{path} has no apply_svd_residual_to_self_attn")
    return mod


def build_official(mod: types.ModuleType, folder: Path) -> Any:
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(folder)
    n = model.config.vision_config.hidden_size
    mod.apply_svd_residual_to_self_attn(model.vision_model, r=n - 1)
    return model


def build_ours(folder: Path) -> Any:
    from aigi.detectors import create_detector

    return create_detector("effort", backbone=str(folder))


def check(ours: Any, official: Any | None, folder: Path) -> dict[str, Any]:
    """Our triplets against a float64 full SVD (and the official float32 ones), up to sign."""
    import torch
    from transformers import CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    from aigi.layers.svd_residual import svd_residual_modules

    hf_logging.set_verbosity_error()  # the folder's text tower is unused here
    plain = CLIPVisionModelWithProjection.from_pretrained(folder)
    ref = dict(plain.vision_model.named_modules())
    off = dict(official.vision_model.named_modules()) if official is not None else {}
    worst: dict[str, float] = {"sigma_rel": 0.0, "u_angle": 0.0, "v_angle": 0.0, "init_max_abs": 0.0,
                               "official_u_angle": 0.0, "official_sigma_rel": 0.0}
    x = torch.randn(5, ours.backbone.config.hidden_size, dtype=torch.float64)
    count = 0
    for name, layer in svd_residual_modules(ours.backbone.vision_model):
        lin = ref[name]
        w = lin.weight.detach().double()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        worst["sigma_rel"] = max(worst["sigma_rel"], float((layer.S_res.double()[0] - s[-1]).abs() / s[-1]))
        worst["u_angle"] = max(worst["u_angle"], 1 - float((layer.U_res.double()[:, 0] @ u[:, -1]).abs()))
        worst["v_angle"] = max(worst["v_angle"], 1 - float((layer.V_res.double()[0] @ vh[-1]).abs()))
        merged = layer.merged_weight().double()
        worst["init_max_abs"] = max(worst["init_max_abs"], float((x @ merged.T - x @ w.T).abs().max()))
        if name in off:
            o = off[name]
            worst["official_u_angle"] = max(worst["official_u_angle"],
                                            1 - float((o.U_residual.detach().double()[:, 0] @ u[:, -1]).abs()))
            worst["official_sigma_rel"] = max(worst["official_sigma_rel"],
                                              float((o.S_residual.detach().double()[0] - s[-1]).abs() / s[-1]))
        count += 1
    return {"matrices": count, **{k: float(f"{v:.3g}") for k, v in worst.items()},
            "note": "1 - |cos| between our (and the official float32) residual vectors and a float64 full "
                    "SVD's smallest triplet; sigma relative error; init_max_abs: |merged - original| on "
                    "random inputs, float32 storage"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, help="path to the official clip_models.py (omit: ours only)")
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3, help="timed builds per side (after one warm-up each)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "effort_build.json")
    args = ap.parse_args(argv)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    official_mod = load_official(args.official) if args.official else None
    res: dict[str, Any] = {"benchmark": "effort_build", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "machine": U.machine_info(), "blocks": args.blocks, "reps": args.reps,
                           "load_before": U.loadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp), args.blocks)
        sides = {"ours": lambda: build_ours(folder)}
        if official_mod is not None:
            sides["official"] = lambda: build_official(official_mod, folder)
        times: dict[str, list[float]] = {k: [] for k in sides}
        loads: list[list[float]] = []
        for fn in sides.values():  # warm-up: imports, first-touch allocations, file cache
            fn()
        order = list(sides)
        for rep in range(args.reps):
            for name in (order if rep % 2 else order[::-1]):
                loads.append(U.loadavg())
                t = time.perf_counter()
                model = sides[name]()
                times[name].append(time.perf_counter() - t)
                del model
        res["seconds"] = {k: [round(v, 3) for v in ts] for k, ts in times.items()}
        res["median_s"] = {k: round(statistics.median(ts), 3) for k, ts in times.items()}
        res["load_during"] = loads
        if "official" in times:
            res["speedup_median"] = round(res["median_s"]["official"] / res["median_s"]["ours"], 2)
            res["speedup_best"] = round(min(times["official"]) / min(times["ours"]), 2)
        res["check"] = check(build_ours(folder), sides["official"]() if "official" in sides else None, folder)
    res["torch_threads"] = torch.get_num_threads()
    res["load_after"] = U.loadavg()
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("median_s", "load_during", "check") if k in res}
                     | {k: res[k] for k in ("speedup_median", "speedup_best") if k in res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
