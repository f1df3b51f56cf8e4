"""Official checkpoints by name: a registry of the authors' releases, download, verify, convert.

``aigi zoo list`` prints :data:`RELEASES`; ``aigi pull NAME`` (and ``--model zoo:NAME`` wherever a
model folder is accepted, through :func:`pull`) returns a converted detector folder
(``config.json`` + ``model.safetensors``) in the cache, fetching and converting it once.

Every entry holds only what was found in the authors' repositories (README, download
scripts, released code, shipped logs); a field that could not be confirmed is ``None`` and
is printed as "unknown". The method pages and ``docs/preprocessing.md`` say where each fact
comes from.

**Where files come from.** ``hf_repo`` → ``huggingface_hub.hf_hub_download``; ``urls`` → plain
HTTPS (urllib) with a progress bar; a Google Drive location cannot be fetched without a
browser (confirmation pages), so ``pull`` says where to download it by hand and how to import
it: ``aigi pull NAME --file PATH``, which is also the only way on an offline machine.

**Cache** (``$AIGI_CACHE``, else ``$XDG_CACHE_HOME/aigi``, else ``~/.cache/aigi``)::

    files/NAME/FILE          verified downloads only
    partial/NAME/FILE.part   an interrupted download; the next pull resumes it (HTTP Range)
                             or restarts it when the server ignores the range
    models/NAME/             the converted detector folder (+ conversion.json)
    sha256.json              checksums recorded on first download for releases that publish none

A download is written to ``partial/`` and moved into ``files/`` only after its sha256 matches
the published (or previously recorded) one; a mismatch deletes it and is an error, so nothing
half-written or corrupt is ever used. The converted folder is written to a temporary folder and
renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from .detectors.folder import CONFIG_NAME

__all__ = ["RELEASES", "ChecksumError", "Release", "ZooError", "cache_dir", "get_release", "pull"]

log = logging.getLogger("aigi")

Converter = Literal["cnnspot", "univfd", "npr", "dffreq", "dgsnet", "effort"]


class ZooError(ValueError):
    """A release that cannot be fetched or imported; the message says what to do."""


class ChecksumError(ZooError):
    """A file whose sha256 differs from the published or recorded one."""


class Release(BaseModel):
    """One official checkpoint release. ``None`` means "not found in the authors' material"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    method: str = Field(description="aigi detector name")
    paper: str
    training_data: str
    file_name: str | None = Field(description="the file's name as released")
    hf_repo: str | None = None
    hf_filename: str | None = None
    urls: tuple[str, ...] = ()
    gdrive_file: str | None = Field(None, description="Google Drive file id")
    gdrive_folder: str | None = Field(None, description="Google Drive folder id, when no file id is published")
    sha256: str | None = None
    converter: Converter
    preset: str = Field(description="test preprocessing written into the converted folder")
    license: str | None = None
    reported: str | None = Field(None, description="numbers the authors report for this checkpoint, with where")
    source: str = Field(description="where these facts were read")

    @property
    def locations(self) -> list[str]:
        """Every known download location, human-readable."""
        out = [f"hf://{self.hf_repo}/{self.hf_filename}"] if self.hf_repo else []
        out += list(self.urls)
        if self.gdrive_file:
            out.append(f"https://drive.google.com/file/d/{self.gdrive_file}/view")
        if self.gdrive_folder:
            out.append(f"https://drive.google.com/drive/folders/{self.gdrive_folder}")
        return out

    @property
    def local_name(self) -> str:
        """The cached file's name (the released one, or NAME.pth when it is not published)."""
        return self.file_name or f"{self.name}.pth"


_CNNSPOT_PAPER = "Wang et al., CNN-generated images are surprisingly easy to spot... for now, CVPR 2020"
_EFFORT_PAPER = "Yan et al., Effort: Orthogonal Subspace Decomposition for Generalizable AI-Generated Image Detection, ICML 2025"
_EFFORT_SRC = "YZY-stack/Effort-AIGI-Detection README (Download checkpoints)"

RELEASES: dict[str, Release] = {r.name: r for r in (
    Release(
        name="cnnspot-blur-jpg-0.5", method="cnnspot", paper=_CNNSPOT_PAPER,
        training_data="ForenSynths ProGAN (20 LSUN classes), Blur+JPEG(0.5) augmentation",
        file_name="blur_jpg_prob0.5.pth",
        urls=("https://www.dropbox.com/s/2g2jagq2jn1fd0i/blur_jpg_prob0.5.pth?dl=1",),
        converter="cnnspot", preset="cnnspot-center-crop224",
        license="CC BY-NC-SA 4.0 (CNNDetection LICENSE.txt)",
        reported="README, AP % with the 224 centre crop (no crop): ProGAN 100.0 (100.0), StyleGAN 98.5 (99.3), "
                 "BigGAN 88.2 (90.4), CycleGAN 96.8 (97.9), StarGAN 95.4 (97.5), GauGAN 98.1 (98.8), CRN 98.9 (100.0), "
                 "IMLE 99.5 (100.0), SITD 92.7 (99.6), SAN 63.9 (62.8), Deepfake 66.3 (63.1), StyleGAN2 98.0 (99.1), "
                 "Whichfaceisreal 88.8 (100.0)",
        source="PeterWang512/CNNDetection weights/download_weights.sh, README"),
    Release(
        name="cnnspot-blur-jpg-0.1", method="cnnspot", paper=_CNNSPOT_PAPER,
        training_data="ForenSynths ProGAN (20 LSUN classes), Blur+JPEG(0.1) augmentation",
        file_name="blur_jpg_prob0.1.pth",
        urls=("https://www.dropbox.com/s/h7tkpcgiwuftb6g/blur_jpg_prob0.1.pth?dl=1",),
        converter="cnnspot", preset="cnnspot-center-crop224",
        license="CC BY-NC-SA 4.0 (CNNDetection LICENSE.txt)",
        reported="README, AP % with the 224 centre crop (no crop): ProGAN 100.0 (100.0), StyleGAN 99.6 (99.8), "
                 "BigGAN 84.5 (86.0), CycleGAN 93.5 (94.9), StarGAN 98.2 (99.0), GauGAN 89.5 (90.8), CRN 98.2 (99.8), "
                 "IMLE 98.4 (99.8), SITD 97.2 (99.8), SAN 70.5 (68.6), Deepfake 89.0 (84.5), StyleGAN2 99.1 (99.5), "
                 "Whichfaceisreal 93.2 (99.8)",
        source="PeterWang512/CNNDetection weights/download_weights.sh, README"),
    Release(
        name="univfd", method="univfd",
        paper="Ojha et al., Towards Universal Fake Image Detectors that Generalize Across Generative Models, CVPR 2023",
        training_data="ForenSynths ProGAN (20 LSUN classes); linear head on frozen CLIP ViT-L/14",
        file_name="fc_weights.pth",
        urls=("https://github.com/WisconsinAIVision/UniversalFakeDetect/raw/HEAD/pretrained_weights/fc_weights.pth",),
        converter="univfd", preset="univfd-center-crop224", license="MIT (repository LICENSE)",
        source="WisconsinAIVision/UniversalFakeDetect pretrained_weights/fc_weights.pth (in the repository)"),
    Release(
        name="npr", method="npr",
        paper="Tan et al., Rethinking the Up-Sampling Operations in CNN-based Generative Network for "
              "Generalizable Deepfake Detection, CVPR 2024",
        training_data="ForenSynths ProGAN, 4 classes (car, cat, chair, horse)",
        file_name="NPR.pth",
        converter="npr", preset="forensynths-resize256",
        source="chuangchuangtan/NPR-DeepfakeDetection README (test command uses ./NPR.pth; no download link found)"),
    Release(
        name="dffreq", method="dffreq",
        paper="Yan et al., Dual Frequency Branch Framework with Reconstructed Sliding Windows Attention for "
              "AI-Generated Image Detection (arXiv 2501.15253; IEEE TIFS 2026)",
        training_data="ForenSynths ProGAN, 4 classes (car, cat, chair, horse)",
        file_name="model_epoch_last.pth",
        urls=("https://github.com/HorizonTEL/DFFreq-main/raw/HEAD/checkpoints/model_epoch_last.pth",),
        converter="dffreq", preset="dffreq-center-crop256",
        reported="log_test.log shipped with the release: ForenSynths mean ACC 78.4 / AP 84.6 (13 sets), "
                 "GANGen-Detection 96.6 / 98.8, AIGIBench 77.9 / 82.0 (25 sets)",
        source="HorizonTEL/AIGIBench detector_codes/DFFreq-main (README, test.py, log_test.log); the standalone "
               "HorizonTEL/DFFreq-main repository ships checkpoints/model_epoch_last.pth"),
    Release(
        name="dgsnet", method="dgsnet",
        paper="Yan et al., DGS-Net: Distillation-Guided Gradient Surgery for CLIP Fine-Tuning in AI-Generated "
              "Image Detection (arXiv 2511.13108; ICML 2026)",
        training_data="AIGIBench training set: ProGAN (car, cat, chair, horse) + SD v1.4",
        file_name="model_epoch_step2.pth",
        gdrive_folder="1_MznDWLcZDNCeWj6AeP8MrJBLoMomxe7",
        converter="dgsnet", preset="dgsnet-patch-selection",
        reported="AIGIBench Setting II mean ACC 82.3 / AP 87.8 (paper; the README notes re-inference differs by about 0.1)",
        source="HorizonTEL/DGS-Net README (Download Weights, Inference)"),
    Release(
        name="effort-genimage-sdv14", method="effort", paper=_EFFORT_PAPER,
        training_data="GenImage, SD v1.4 subset (DeepfakeBench codebase)",
        file_name=None, gdrive_file="1UXf1hC9FC1yV93uKwXSkdtepsgpIAU9d",
        converter="effort", preset="deepfakebench-resize224", license="CC BY-NC 4.0 (README)",
        reported="GenImage (trained on SD v1.4) mean ACC 91.1 (paper)", source=_EFFORT_SRC),
    Release(
        name="effort-chameleon-sdv14", method="effort", paper=_EFFORT_PAPER,
        training_data="Chameleon, SD v1.4 (DeepfakeBench codebase)",
        file_name=None, gdrive_file="1GlJ1y4xmTdqV0FfIcyBwNNU6cQird9DR",
        converter="effort", preset="deepfakebench-resize224", license="CC BY-NC 4.0 (README)", source=_EFFORT_SRC),
    Release(
        name="effort-ffpp", method="effort", paper=_EFFORT_PAPER,
        training_data="FaceForensics++ (face forgeries; DeepfakeBench codebase, faces cropped with dlib)",
        file_name=None, gdrive_file="1m4fyJecABU-Yk3bJ4b1WhUwQa0xCkMLI",
        converter="effort", preset="deepfakebench-resize224", license="CC BY-NC 4.0 (README)", source=_EFFORT_SRC),
)}


def get_release(name: str) -> Release:
    """The release called ``name``; an unknown name lists the known ones."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ZooError(f"no official release named {name!r}; known: {', '.join(sorted(RELEASES))} "
                       "(aigi zoo list)") from None


def cache_dir() -> Path:
    """``$AIGI_CACHE``, else ``$XDG_CACHE_HOME/aigi``, else ``~/.cache/aigi``."""
    if os.environ.get("AIGI_CACHE"):
        return Path(os.environ["AIGI_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "aigi"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- checksums -----------------------------------------------------------------------------
def _recorded(root: Path) -> dict[str, dict[str, str]]:
    path = root / "sha256.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ZooError(f"{path} is not valid JSON ({err}); delete it to record the checksums again") from None
    return data if isinstance(data, dict) else {}


def expected_sha256(release: Release, root: Path | None = None) -> tuple[str | None, str]:
    """(sha256, where it comes from: 'published' / 'recorded' / 'unknown')."""
    if release.sha256:
        return release.sha256, "published"
    entry = _recorded(root or cache_dir()).get(release.name)
    if entry and entry.get("sha256"):
        return entry["sha256"], "recorded"
    return None, "unknown"


def _verify(release: Release, path: Path, root: Path, say: Callable[[str], None]) -> str:
    """Check ``path`` against the known sha256, or record it when none is known; returns the digest."""
    digest = sha256_file(path)
    want, origin = expected_sha256(release, root)
    if want is None:
        data = _recorded(root)
        data[release.name] = {"file": release.local_name, "sha256": digest,
                              "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / "sha256.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, root / "sha256.json")
        say(f"{release.name}: no sha256 is published; recorded {digest} on first use "
            f"(in {root / 'sha256.json'}); later downloads are checked against it")
    elif digest != want:
        raise ChecksumError(
            f"{path} has sha256 {digest}, but the {origin} sha256 of {release.name} is {want}: "
            "the file is corrupt, incomplete or a different release"
            + ("" if origin == "published" else f" (delete its entry in {root / 'sha256.json'} if the release changed)")
        )
    return digest


# -- downloading ---------------------------------------------------------------------------
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("aigi")
    except Exception:  # not installed as a distribution (a source checkout)
        return "dev"


def _progress():
    """A transient rich download bar on stderr, shown only on a terminal."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


def http_download(url: str, part: Path, *, timeout: float = 60.0, label: str = "") -> Path:
    """Fetch ``url`` into ``part``, resuming from its current size with an HTTP Range request.

    A server that ignores the range (status 200) restarts the file from zero. A connection that
    ends early raises :class:`ZooError` and leaves ``part`` to be resumed. Returns ``part``.
    """
    from rich.markup import escape

    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"aigi/{_version()} (official checkpoint download)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # the range starts at the end: the part is already complete
            return part
        raise ZooError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ZooError(f"cannot reach {url}: {reason}. Offline? Download the file elsewhere and import it "
                       "with `aigi pull NAME --file PATH`") from None
    with response:
        resumed = start > 0 and response.status == 206
        if start and not resumed:
            start = 0  # the server sent the whole file: restart
        length = response.headers.get("Content-Length")
        total = int(length) + start if length and length.isdigit() else None
        done = start
        with part.open("ab" if resumed else "wb") as fh, _progress() as bar:
            task = bar.add_task(escape(label or part.name), total=total, completed=start)
            try:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    fh.write(chunk)
                    done += len(chunk)
                    bar.update(task, completed=done)
            except (OSError, ValueError) as err:  # connection reset, timeout, IncompleteRead
                fh.flush()
                raise ZooError(f"download of {url} was interrupted after {done} bytes ({type(err).__name__}); "
                               "run the same command again to resume it") from None
    if total is not None and done < total:
        raise ZooError(f"download of {url} was interrupted after {done} of {total} bytes; "
                       "run the same command again to resume it")
    return part


def _fetch(release: Release, root: Path, say: Callable[[str], None]) -> Path:
    """The verified release file in ``files/``, downloading it when needed."""
    dest = root / "files" / release.name / release.local_name
    if dest.is_file():
        try:
            _verify(release, dest, root, say)
            return dest
        except ChecksumError as err:
            say(f"cached {release.local_name} failed its check ({err}); downloading it again")
            dest.unlink()
    if release.hf_repo:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(repo_id=release.hf_repo, filename=release.hf_filename or release.local_name,
                                    cache_dir=str(root / "hub")))
        _verify(release, path, root, say)
        return path
    if release.urls:
        part = root / "partial" / release.name / (release.local_name + ".part")
        errors = []
        for url in release.urls:
            try:
                http_download(url, part, label=release.local_name)
            except ZooError as err:
                errors.append(str(err))
                continue
            try:
                _verify(release, part, root, say)
            except ChecksumError:
                part.unlink(missing_ok=True)
                raise
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, dest)
            return dest
        raise ZooError(" ; ".join(errors))
    where = ", ".join(release.locations) or "no public download location was found"
    raise ZooError(
        f"{release.name} cannot be downloaded automatically ({where}). Download "
        f"{release.file_name or 'the checkpoint'} by hand, then import it with "
        f"`aigi pull {release.name} --file PATH`"
    )


# -- converting ----------------------------------------------------------------------------
def _convert(release: Release, checkpoint: Path, output: Path) -> Path:
    if release.converter == "effort":
        from .convert.effort import convert_effort_official

        return convert_effort_official(checkpoint, output, overwrite=True, preset=release.preset)
    if release.converter == "dffreq":
        from .convert.dffreq import convert_dffreq

        return convert_dffreq(checkpoint, output, preset=release.preset, overwrite=True)
    if release.converter == "dgsnet":
        from .convert.dgsnet import convert_dgsnet

        return convert_dgsnet(checkpoint, output, preset=release.preset, overwrite=True)
    from .convert import baselines

    fn = {"cnnspot": baselines.convert_cnnspot, "npr": baselines.convert_npr,
          "univfd": baselines.convert_univfd}[release.converter]
    return fn(checkpoint, output, preset=release.preset, overwrite=True)


def pull(name: str, *, file: Path | None = None, force: bool = False,
         say: Callable[[str], None] | None = None) -> Path:
    """The converted detector folder of the release ``name`` (fetched and converted on first use).

    ``file`` imports a checkpoint downloaded by hand (checked against the published or recorded
    sha256, and recorded when none is known); ``force`` converts again even when a converted
    folder is cached. ``say`` receives progress messages (default: the ``aigi`` logger).
    """
    release = get_release(name)
    say = say or log.info
    root = cache_dir()
    model_dir = root / "models" / release.name
    if file is None and not force and (model_dir / CONFIG_NAME).is_file():
        return model_dir
    if file is not None:
        source = Path(file).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"--file {source} does not exist")
        _verify(release, source, root, say)
    else:
        source = _fetch(release, root, say)
    (root / "models").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{release.name}.", dir=root / "models"))
    try:
        _convert(release, source, tmp / "model")
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp / "model", model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"{release.name}: converted with the {release.converter} importer, test preprocessing preset {release.preset!r}")
    return model_dir
