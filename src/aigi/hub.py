"""Detector folders on the Hugging Face Hub: fetch one (:func:`snapshot`), publish one (:func:`push`).

A Hub repository holding an aigi detector folder (``config.json`` + ``model.safetensors``,
optionally ``calibration.json``, ``training.json``, ``eval/metrics.json``, an ONNX export) is
used like a local folder: ``aigi.load_detector("user/repo")``, ``--model user/repo``,
with ``revision=`` for a branch, tag or commit. Downloads go to the ordinary Hugging Face
cache (``HF_HUB_CACHE``); with ``HF_HUB_OFFLINE=1`` a cached snapshot is used and nothing is
fetched, so offline use is unchanged.

:func:`push` uploads a folder with a generated model card (``README.md``, see
:func:`model_card` and docs/deploy.md): method, paper, training data, preprocessing,
threshold, calibration, benchmark numbers when the folder has them, and the limits of the
method. ``aigi push MODEL_DIR user/repo --dry-run`` prints the card and the file list
without uploading.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .detectors.folder import (
    CALIBRATION_NAME,
    CONFIG_NAME,
    CONVERSION_NAME,
    EVAL_DIR,
    METRICS_NAME,
    TRAIN_CONFIG_NAME,
    TRAINING_NAME,
    WEIGHTS_NAME,
)

__all__ = ["HubError", "PushResult", "model_card", "push", "push_files", "snapshot"]

#: files of a detector folder that are fetched and published (never checkpoints/)
FOLDER_FILES: tuple[str, ...] = (
    CONFIG_NAME, WEIGHTS_NAME, CALIBRATION_NAME, TRAINING_NAME, TRAIN_CONFIG_NAME,
    CONVERSION_NAME, f"{EVAL_DIR}/{METRICS_NAME}", "model.onnx", "model.onnx.data", "model.json", "README.md",
)


class HubError(OSError):
    """A Hub repository that cannot be fetched or published; the message says why and what to do."""


def _validate_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise HubError(f"{repo_id!r} is not a Hub repository id: expected 'user/repo'")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"{repo_id!r} is not a valid Hub repository id: {err}") from None


def snapshot(repo_id: str, revision: str | None = None, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local copy of the detector folder in Hub repo ``repo_id`` (at ``revision``); returns its path.

    Only the files of a detector folder are fetched (:data:`FOLDER_FILES`). Raises
    :class:`HubError` for an unknown repository or revision, for no network and no cached copy,
    and for a repository that holds no aigi detector.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    _validate_repo_id(repo_id)
    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(FOLDER_FILES),
                                      cache_dir=None if cache_dir is None else str(cache_dir)))
    except RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r} (a branch, tag or commit)") from None
    except GatedRepoError:
        raise HubError(f"{repo_id} is gated: accept its terms on the Hub and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise HubError(f"no Hub repository {repo_id} (or it is private: log in with `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise HubError(
            f"{at} is not in the local Hugging Face cache and cannot be downloaded (offline or no network); "
            "download it where there is a network, or pass a local detector folder"
        ) from None
    config = path / CONFIG_NAME
    if not config.is_file():
        raise HubError(f"{at} holds no config.json: it is not an aigi detector folder")
    try:
        meta = json.loads(config.read_text())
    except json.JSONDecodeError as err:
        raise HubError(f"{at}: config.json is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or not meta.get("method"):
        hint = ""
        if isinstance(meta, dict) and any(a.endswith("ForImageClassification") for a in meta.get("architectures", [])):
            hint = (f"; it is a transformers image classifier: wrap it with "
                    f"`aigi import-hf {repo_id} OUTPUT --fake-label LABEL`")
        raise HubError(f"{at}: config.json names no aigi method, so it is not an aigi detector folder{hint}")
    if not (path / WEIGHTS_NAME).is_file():
        raise HubError(f"{at} has config.json but no model.safetensors")
    return path


# --------------------------------------------------------------------------- model card

#: per method: (paper, official code, documentation page, the method's own limits)
_METHODS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "cnnspot": ("Wang et al., CVPR 2020", "yes", "README.md", (
        "A ResNet-50 trained end to end on the training generator; the paper's setting is one GAN (ProGAN), "
        "and detectors of this kind are known to transfer worse to diffusion models.",)),
    "univfd": ("Ojha et al., CVPR 2023", "yes", "README.md", (
        "A linear probe on frozen CLIP ViT-L/14 embeddings: it can only separate what CLIP's embedding "
        "separates, and it sees one 224 x 224 crop.",)),
    "npr": ("Tan et al., CVPR 2024", "yes", "README.md", (
        "Relies on the traces up-sampling leaves between neighbouring pixels; resizing and JPEG "
        "re-compression change exactly those pixels.",)),
    "dffreq": ("Yan et al., 2025 (in AIGIBench's code)", "yes (inside AIGIBench)", "docs/synthetic.md", (
        "Reads wavelet and Fourier-phase statistics, which resampling and compression change.",)),
    "effort": ("Yan et al., ICML 2025", "yes", "docs/effort.md", (
        "Learns only a rank-1 residual per attention matrix of a frozen CLIP ViT-L/14 plus a linear head; "
        "what it detects is bounded by what the frozen tower represents.",)),
    "masm": ("Zhang et al., 2026", "no (built from the paper's abstracts)", "docs/effort.md", (
        "No official code: this is the project's reading of the paper, not the authors' implementation.",)),
    "selop": ("Wang et al., 2026", "no", "docs/effort.md", (
        "No official code: this is the project's reading of the paper, not the authors' implementation.",)),
    "nsnet": ("Yan et al., 2025", "no", "docs/clip_family.md", (
        "No official code: this is the project's reading of the paper, not the authors' implementation.",)),
    "dgsnet": ("Yan et al., 2025/26", "yes (https://github.com/HorizonTEL/DGS-Net)", "docs/clip_family.md", ()),
    "pinclip": ("2025", "no", "docs/clip_family.md", (
        "No official code: this is the project's reading of the paper, not the authors' implementation.",)),
    "causalclip": ("2026", "no", "docs/clip_family.md", (
        "No official code: this is the project's reading of the paper, not the authors' implementation.",)),
    "hf_classifier": ("the wrapped model's own card", "see the wrapped model", "docs/deploy.md", (
        "A wrapped transformers classifier: its training data, intended use and limits are those of the "
        "original model's card.",)),
}

_GENERAL_LIMITS = (
    "It scores only what its preprocessing keeps (see Preprocessing); content cropped away is never seen.",
    "It was trained on the data named above. Generators unlike that data may be missed: generalising to "
    "unseen generators is the open problem of this field.",
    "Post-processing (JPEG re-compression, resizing, screenshots, filters) moves the scores; measure it on "
    "your own data with the robustness task of `aigi bench`.",
    "A P(fake) is evidence, not proof. A calibrated threshold holds for images like the reals it was "
    "calibrated on.",
)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _pct(v: Any) -> str:
    return "–" if not isinstance(v, (int, float)) else f"{100 * float(v):.1f}"


def model_card(folder: str | os.PathLike, repo_id: str | None = None) -> str:
    """The ``README.md`` model card for a detector folder (Markdown with Hub metadata)."""
    from .detectors.base import read_config

    folder = Path(folder)
    config = read_config(folder)
    method = str(config.get("method") or "")
    if not method:
        raise ValueError(f"{folder / 'config.json'} names no method")
    paper, code, docs, own_limits = _METHODS.get(method, ("not recorded", "not recorded", "README.md", ()))
    try:
        from .detectors import list_detectors

        summary = list_detectors().get(method, "")
    except Exception:  # a card must still be written for a method this install does not know
        summary = ""
    training = _read_json(folder / TRAINING_NAME)
    conversion = _read_json(folder / CONVERSION_NAME)
    calibration = _read_json(folder / CALIBRATION_NAME)
    metrics = _read_json(folder / EVAL_DIR / METRICS_NAME)
    pre = config.get("preprocess", {})
    labels = config.get("labels", ["real", "fake"])
    title = repo_id or folder.name

    lines = ["---", "library_name: aigi", "pipeline_tag: image-classification",
             "tags:", "- aigi", "- ai-generated-image-detection", f"- {method}", "---", "",
             f"# {title}", "",
             f"An `aigi` detector of AI-generated images: **{method}**" + (f" — {summary.rstrip('.')}" if summary else "")
             + ".",
             "", "```python", "import aigi",
             f'model = aigi.load_detector("{repo_id or folder}")   # preprocessing and threshold come with it',
             "```", "",
             f"or `aigi detect --model {repo_id or folder} photos/`.", "",
             "## Method", "",
             "| | |", "|---|---|",
             f"| method | `{method}` |", f"| paper | {paper} |", f"| official code | {code} |",
             f"| documentation | `{docs}` in the aigi repository |"]
    backbone = config.get("backbone")
    if isinstance(backbone, dict) and backbone.get("source"):
        lines.append(f"| backbone | `{backbone['source']}` |")
    if method == "hf_classifier":
        lines.append(f"| wrapped model | `{config.get('source')}` (fake label: `{config.get('fake_label')}`) |")
    lines += ["", "## Training data", ""]
    if isinstance(training, dict):
        lines += [f"- data: `{training.get('train_data', 'not recorded')}`",
                  f"- images: {training.get('train_images', 'not recorded')}, steps: {training.get('steps', '?')}",
                  f"- recipe sha256: `{training.get('recipe_sha256', 'not recorded')}`"]
    elif isinstance(conversion, dict):
        lines += ["Imported from an official checkpoint (`aigi convert`):", "",
                  "```json", json.dumps(conversion, indent=2, sort_keys=True), "```"]
    else:
        lines.append("Not recorded in this folder (no `training.json`): ask the publisher what it was trained on.")
    lines += ["", "## Preprocessing", "",
              "Applied by aigi from `config.json` (test time):", "",
              "| field | value |", "|---|---|"]
    for key in ("test", "size", "resize_to", "interpolation", "normalize", "even_crop"):
        if key in pre:
            lines.append(f"| {key} | `{pre[key]}` |")
    lines += ["", "## Decision", "",
              f"- output: P({labels[1]}) = sigmoid(logit); label 0 is `{labels[0]}`, label 1 `{labels[1]}`",
              f"- threshold: **{config.get('threshold', 0.5)}** (the verdict is `{labels[1]}` at or above it)"]
    if isinstance(calibration, dict) and "threshold" in calibration:
        fpr = calibration.get("fpr", calibration.get("target_fpr"))
        lines.append(f"- calibrated threshold: **{calibration['threshold']:.4g}** "
                     f"(FPR {_pct(fpr)}% on {calibration.get('n_real', '?')} real images"
                     + (f" of `{calibration['data']}`" if calibration.get("data") else "")
                     + (f", TPR {_pct(calibration['tpr'])}%" if calibration.get("tpr") is not None else "")
                     + "); use it with `--calibrated`")
        band = calibration.get("band")
        if isinstance(band, dict):
            lines.append(f"- abstain band: P in [{band.get('low')}, {band.get('high')}) answers `uncertain`")
    else:
        lines.append("- calibration: none (no `calibration.json`); `aigi calibrate` writes one")
    lines += ["", "## Benchmark", ""]
    if isinstance(metrics, dict) and isinstance(metrics.get("subsets"), dict):
        lines += [f"`aigi eval` on `{metrics.get('data', '?')}` at threshold {metrics.get('threshold', '?')}:", "",
                  "| subset | ACC | R.Acc | F.Acc | AP | AUROC | n real | n fake |",
                  "|---|---|---|---|---|---|---|---|"]
        rows = list(metrics["subsets"].items()) + ([("**mean**", metrics["mean"])]
                                                   if isinstance(metrics.get("mean"), dict) else [])
        for name, m in rows:
            lines.append(f"| {name} | {_pct(m.get('acc'))} | {_pct(m.get('r_acc'))} | {_pct(m.get('f_acc'))} | "
                         f"{_pct(m.get('ap'))} | {_pct(m.get('auroc'))} | {m.get('n_real', '–')} | "
                         f"{m.get('n_fake', '–')} |")
    else:
        lines.append("No benchmark numbers in this folder (`aigi eval` writes `eval/metrics.json`).")
    lines += ["", "## Limits", ""]
    lines += [f"- {text}" for text in (*own_limits, *_GENERAL_LIMITS)]
    if (folder / "model.onnx").is_file():
        lines += ["", "## ONNX", "",
                  "`model.onnx` is the folded model (`aigi export`): input `pixels` float32 (batch, 3, H, W) "
                  "preprocessed as above, output `logits` (batch,). Its preprocessing and threshold are in the "
                  "file's metadata and in `model.json`."]
    lines += ["", "Card generated by aigi from the folder's files.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- push


@dataclass
class PushResult:
    """What :func:`push` uploaded (or, with ``dry_run``, would upload)."""

    repo_id: str
    files: list[str] = field(default_factory=list)
    card: str = ""
    url: str | None = None


def push_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` that :func:`push` uploads, relative to it (config and weights required)."""
    folder = Path(folder)
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} is not a detector folder: {required} not found")
    return [name for name in FOLDER_FILES if name != "README.md" and (folder / name).is_file()]


def push(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
) -> PushResult:
    """Upload a detector folder to Hub repo ``repo_id`` with a generated ``README.md`` model card.

    Creates the repository if needed (``private`` then applies). ``dry_run`` returns the card
    and the file list without contacting the Hub.
    """
    from .detectors.base import load_detector

    folder = Path(folder)
    _validate_repo_id(repo_id)
    files = push_files(folder)
    load_detector(folder)  # refuse to publish a folder that does not load
    card = model_card(folder, repo_id)
    result = PushResult(repo_id=repo_id, files=files + ["README.md"], card=card)
    if dry_run:
        return result
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(repo_id, operations=operations, revision=revision,
                                 commit_message=commit_message or f"Upload {folder.name} (aigi detector)")
    except HfHubHTTPError as err:
        raise HubError(f"uploading to {repo_id} failed: {err}") from None
    result.url = getattr(info, "commit_url", None) or f"{api.endpoint}/{repo_id}"
    return result
