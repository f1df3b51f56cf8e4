"""Preprocessing and training augmentation: decoded RGB image -> normalised tensor.

Every detector stores a :class:`PreprocessConfig` (and, for training, an
:class:`AugmentConfig`) in its ``config.json``; :func:`build_transform` turns it
into a callable ``transform(img, rng) -> Tensor (3, H, W) float32``.

Geometric modes (``size`` is the final square side):

* ``center_crop``: crop ``size x size`` from the centre without resizing; an
  image smaller than ``size`` is zero-padded symmetrically first (the extra
  pixel of an odd padding goes right/bottom), exactly like torchvision's
  ``CenterCrop`` (offsets ``round((H - size) / 2)``);
* ``random_crop``: the same padding, then a crop at a random offset;
* ``resize``: resize to exactly ``size x size`` (aspect ratio not kept);
* ``resize_center_crop`` / ``resize_random_crop``: shorter side to
  ``resize_to`` (longer side ``int(resize_to * long / short)``, as torchvision),
  then a centre / random crop;
* ``translate_duplicate`` (and its ``_random_crop`` train variant): tile the
  image with ``np.tile`` (never resampled) until both sides reach
  ``max(resize_to, size)``, then a centre / random crop;
* ``patch_selection``: :func:`aigi.data.patches.select_patches` with a
  ``size // 32`` grid (``size`` must be a multiple of 32); shuffled with the
  rng at train time; at test time unshuffled, or (``patch_test_shuffle``, as
  DGS-Net's official loader) shuffled by a generator seeded from
  ``patch_seed`` and the image's pixels, so a score is reproducible and does
  not depend on batch order; ``patch_entropy`` picks our entropy rule or the
  official code's (see :mod:`aigi.data.patches`);
* ``none``: no geometric change.

``even_crop`` then drops the last row/column of an odd-sized result (NPR).

Train order: augmentations on the decoded image (Gaussian blur, in-memory JPEG,
rotation, colour jitter) -> geometric train mode -> horizontal flip -> tensor ->
random patch masking -> normalisation. Test order: geometric test mode ->
tensor -> normalisation; the test path ignores the rng entirely.

All randomness comes from the ``numpy.random.Generator`` passed to the call,
so a per-sample seeded generator makes training reproducible.

**Presets** (:data:`PRESETS`, :func:`preset`): named ``PreprocessConfig`` s that
reproduce one official codebase's test protocol (ForenSynths resize-256, native
size, UnivFD centre crop, Effort translate-duplicate, DeepfakeBench resize-224,
DFFreq centre-crop-256, CNNSpot no-crop, DGS-Net patch selection, ...). Anywhere a
``PreprocessConfig`` is validated (a detector's config, a recipe, a protocol file)
the preset's name may stand for it: ``preprocess: deepfakebench-resize224``.
``docs/preprocessing.md`` has the table of methods × codebases.
"""

from __future__ import annotations

import io as _io
import math
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .io import to_rgb
from .patches import image_seed, select_patches

__all__ = [
    "AugmentConfig",
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "Preset",
    "PreprocessConfig",
    "Transform",
    "build_transform",
    "center_crop",
    "cv2_linear_resize",
    "normalize",
    "preset",
    "preset_name",
    "random_crop",
    "to_tensor",
    "translate_duplicate",
]

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "clip": (CLIP_MEAN, CLIP_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

_PATCH = 32  # patch side of Patch Selection


class PreprocessConfig(BaseModel):
    """Geometry and normalisation of a detector's input (stored in its config.json)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: int = Field(224, gt=0, le=4096, description="final square side fed to the network")
    test: Literal[
        "center_crop",
        "resize",
        "resize_center_crop",
        "translate_duplicate",
        "patch_selection",
        "none",
    ] = "center_crop"
    train: Literal[
        "random_crop",
        "resize_random_crop",
        "translate_duplicate_random_crop",
        "resize",
        "patch_selection",
        "center_crop",
    ] = "random_crop"
    resize_to: int = Field(
        256, gt=0, le=8192, description="shorter side for resize_* modes; tile target for translate_duplicate"
    )
    interpolation: Literal["bilinear", "bicubic", "nearest", "cv2_linear"] = Field(
        "bilinear", description="resampling of the resize modes: Pillow's filters, or cv2_linear, OpenCV's "
        "INTER_LINEAR on uint8 (no antialiasing) reproduced bit for bit (DeepfakeBench's demo)"
    )
    normalize: Literal["clip", "imagenet", "none"] = "imagenet"
    flip: bool = Field(True, description="random horizontal flip (p=0.5) at train time")
    even_crop: bool = Field(False, description="crop H, W to even sizes (NPR with mode 'none')")
    face_scale: float = Field(
        1.3, gt=0.0, le=10.0, description="images with a face box (manifest x0, y0, x1, y1) are first cropped to a square "
        "of this many times the box's longer side (FaceForensics++: 1.3); see aigi.data.faces")
    patch_entropy: Literal["aigi", "official"] = Field(
        "aigi", description="patch_selection ranking: ours (natural log, stable ties) or the DGS-Net code's "
        "(log2 with 1e-12 guards, numpy's default argsort)"
    )
    patch_test_shuffle: bool = Field(
        False, description="patch_selection at test time: shuffle the kept patches (DGS-Net's official loader)"
    )
    patch_seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the test-time patch shuffle (mixed with the image's pixels)")

    @model_validator(mode="before")
    @classmethod
    def _from_preset_name(cls, data: Any) -> Any:
        """A preset's name stands for its config (``preprocess: deepfakebench-resize224``)."""
        if isinstance(data, str):
            return preset(data).model_dump()
        return data


class Preset(NamedTuple):
    """A named test protocol of an official codebase."""

    config: PreprocessConfig
    protocol: str


class AugmentConfig(BaseModel):
    """Training-time augmentations applied to the decoded image (all off by default).

    ``blur_jpeg_prob`` is CNNSpot's Blur+JPEG(p): blur and JPEG each happen
    independently with that probability unless ``blur_prob``/``jpeg_prob``
    override it. Blur sigma ~ U(blur_sigma) with Pillow's ``GaussianBlur``
    (radius = sigma; Pillow approximates the Gaussian with repeated box
    blurs). JPEG quality ~ uniform integer in ``jpeg_quality`` (inclusive),
    re-encoded in memory with Pillow. Rotation: angle ~ U(-rotation_degrees,
    rotation_degrees), bilinear, same canvas size, corners filled black.
    Colour jitter: brightness, contrast and saturation factors each
    ~ U(1 - color_jitter, 1 + color_jitter), applied in that order.
    Masking: with ``mask_prob``, ``round(mask_ratio * cells)`` cells of a
    ``mask_patch`` grid (edge cells included) are set to 0 before normalisation.
    """

    model_config = ConfigDict(extra="forbid")

    blur_jpeg_prob: float = Field(0.0, ge=0.0, le=1.0)
    blur_prob: float | None = Field(None, ge=0.0, le=1.0)
    jpeg_prob: float | None = Field(None, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_quality: tuple[int, int] = (30, 100)
    rotation_prob: float = Field(0.0, ge=0.0, le=1.0)
    rotation_degrees: float = Field(15.0, ge=0.0)
    color_jitter_prob: float = Field(0.0, ge=0.0, le=1.0)
    color_jitter: float = Field(0.2, ge=0.0, le=1.0)
    mask_prob: float = Field(0.0, ge=0.0, le=1.0)
    mask_ratio: float = Field(0.25, ge=0.0, le=1.0)
    mask_patch: int = Field(16, gt=0)

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        lo, hi = self.blur_sigma
        if not 0.0 <= lo <= hi:
            raise ValueError(f"blur_sigma must satisfy 0 <= low <= high, got {self.blur_sigma}")
        qlo, qhi = self.jpeg_quality
        if not 1 <= qlo <= qhi <= 100:
            raise ValueError(
                f"jpeg_quality must satisfy 1 <= low <= high <= 100, got {self.jpeg_quality}"
            )
        return self

    @property
    def effective_blur_prob(self) -> float:
        """Probability of blurring (``blur_prob`` or else ``blur_jpeg_prob``)."""
        return self.blur_jpeg_prob if self.blur_prob is None else self.blur_prob

    @property
    def effective_jpeg_prob(self) -> float:
        """Probability of JPEG re-encoding (``jpeg_prob`` or else ``blur_jpeg_prob``)."""
        return self.blur_jpeg_prob if self.jpeg_prob is None else self.jpeg_prob


# --------------------------------------------------------------------------- tensors


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """RGB image (PIL, or uint8 HxWx3 array) -> float32 tensor (3, H, W) in [0, 1]."""
    if isinstance(img, Image.Image):
        arr = np.array(to_rgb(img), dtype=np.uint8)
    else:
        arr = np.array(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"to_tensor expects an H x W x 3 image, got shape {arr.shape}")
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


def normalize(t: torch.Tensor, kind: Literal["clip", "imagenet", "none"]) -> torch.Tensor:
    """Subtract the channel mean and divide by the std of ``kind`` ("none": unchanged).

    Works on (3, H, W) and (B, 3, H, W); returns a new tensor.
    """
    if kind == "none":
        return t
    if kind not in _NORMS:
        raise ValueError(f"unknown normalisation {kind!r}; choose clip, imagenet or none")
    mean, std = _NORMS[kind]
    m = torch.tensor(mean, dtype=t.dtype, device=t.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=t.dtype, device=t.device).view(3, 1, 1)
    return (t - m) / s


# --------------------------------------------------------------------------- geometry


def _as_array(img: Image.Image | np.ndarray) -> np.ndarray:
    return np.asarray(to_rgb(img)) if isinstance(img, Image.Image) else np.asarray(img)


def _pad_to(arr: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (H,W,3) symmetrically so both sides are at least ``size`` (torchvision split)."""
    h, w = arr.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return arr
    return np.pad(arr, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def center_crop(img: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """Centre ``size x size`` crop (zero-padded first when smaller), as torchvision CenterCrop."""
    arr = _pad_to(_as_array(img), size)
    h, w = arr.shape[:2]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return arr[top : top + size, left : left + size]


def random_crop(img: Image.Image | np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size x size`` crop at a uniform random offset (zero-padded first when smaller)."""
    arr = _pad_to(_as_array(img), size)
    h, w = arr.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return arr[top : top + size, left : left + size]


def translate_duplicate(img: Image.Image, target: int) -> Image.Image:
    """Tile ``img`` (``np.tile``, never resampled) until both sides are >= ``target``.

    Uses the fewest whole repetitions (``ceil(target / side)`` per axis) and
    does not crop: a 100x100 image with ``target=256`` becomes 300x300. Images
    already large enough are returned as RGB, unchanged.
    """
    arr = np.asarray(to_rgb(img))
    h, w = arr.shape[:2]
    reps = (max(1, math.ceil(target / h)), max(1, math.ceil(target / w)), 1)
    if reps[:2] == (1, 1):
        return to_rgb(img)
    return Image.fromarray(np.tile(arr, reps))


def _cv2_linear_taps(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit fixed-point weights of OpenCV's INTER_LINEAR along one axis."""
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp:  # OpenCV clamps the column positions, not the row positions (rows are clamped when read)
        f[s < 0], s[s < 0] = 0, 0
        edge = s >= src - 1
        f[edge], s[edge] = 0, src - 1
    w1 = np.rint(f * np.float32(2048)).astype(np.int64)
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), w0, w1


def cv2_linear_resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR)`` for uint8 (H, W, C) arrays.

    OpenCV's fixed-point path: half-pixel centres, no antialiasing, 11-bit weights, a horizontal
    pass into integers, then the vectorised vertical pass
    ``((((S0 >> 4) * b0) >> 16) + (((S1 >> 4) * b1) >> 16) + 2) >> 2``. Equal to
    opencv-python-headless 5.1.0.95 on every one of the 132 images of the development set and
    on random up- and down-scalings (measured when written).
    """
    src = np.asarray(arr)
    if src.dtype != np.uint8 or src.ndim != 3:
        raise ValueError(f"cv2_linear_resize expects a uint8 H x W x C array, got {src.dtype} {src.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"cv2_linear_resize needs a positive size, got {width} x {height}")
    if (src.shape[1], src.shape[0]) == (width, height):
        return src.copy()
    data = src.astype(np.int64)
    xs, xs1, a0, a1 = _cv2_linear_taps(src.shape[1], width, clamp=True)
    ys, ys1, b0, b1 = _cv2_linear_taps(src.shape[0], height, clamp=False)
    rows = data[:, xs] * a0[None, :, None] + data[:, xs1] * a1[None, :, None]
    top, bottom = rows[ys] >> 4, rows[ys1] >> 4
    v = ((top * b0[:, None, None]) >> 16) + ((bottom * b1[:, None, None]) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def _resize(img: Image.Image, size: tuple[int, int], interpolation: str) -> Image.Image:
    """``img`` resized to ``size`` = (width, height) with a Pillow filter or OpenCV's INTER_LINEAR."""
    if interpolation == "cv2_linear":
        return Image.fromarray(cv2_linear_resize(np.asarray(img), *size))
    return img.resize(size, _RESAMPLE[interpolation])


def _resize_shorter(img: Image.Image, side: int, interpolation: str) -> Image.Image:
    w, h = img.size
    if w <= h:
        ow, oh = side, int(side * h / w)
    else:
        ow, oh = int(side * w / h), side
    if (ow, oh) == (w, h):
        return img
    return _resize(img, (ow, oh), interpolation)


# --------------------------------------------------------------------------- augmentation


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        out.load()
        return out.convert("RGB")


def _augment(img: Image.Image, aug: AugmentConfig, rng: np.random.Generator) -> Image.Image:
    p_blur = aug.effective_blur_prob
    if p_blur > 0 and rng.random() < p_blur:
        sigma = float(rng.uniform(*aug.blur_sigma))
        if sigma > 0:
            img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
    p_jpeg = aug.effective_jpeg_prob
    if p_jpeg > 0 and rng.random() < p_jpeg:
        lo, hi = aug.jpeg_quality
        img = _jpeg(img, int(rng.integers(lo, hi + 1)))
    if aug.rotation_prob > 0 and rng.random() < aug.rotation_prob:
        angle = float(rng.uniform(-aug.rotation_degrees, aug.rotation_degrees))
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    if aug.color_jitter_prob > 0 and rng.random() < aug.color_jitter_prob:
        s = aug.color_jitter
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(float(rng.uniform(1.0 - s, 1.0 + s)))
    return img


def _mask_patches(t: torch.Tensor, aug: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Zero ``round(mask_ratio * cells)`` random cells of a ``mask_patch`` grid."""
    _, h, w = t.shape
    cell = aug.mask_patch
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    n = gh * gw
    k = int(round(aug.mask_ratio * n))
    if k == 0:
        return t
    keep = np.ones(n, dtype=np.float32)
    keep[rng.choice(n, size=k, replace=False)] = 0.0
    mask = np.repeat(np.repeat(keep.reshape(gh, gw), cell, axis=0), cell, axis=1)[:h, :w]
    return t * torch.from_numpy(np.ascontiguousarray(mask))


# --------------------------------------------------------------------------- transform


class Transform:
    """Callable ``(img, rng) -> Tensor (3, H, W)`` built by :func:`build_transform`.

    ``rng`` is required at train time (all randomness comes from it) and
    ignored at test time. Picklable, so it works in DataLoader workers.
    """

    def __init__(
        self, pre: PreprocessConfig, *, train: bool, augment: AugmentConfig | None = None
    ) -> None:
        self.pre = pre
        self.train = train
        self.augment = augment if train else None
        self.mode: str = pre.train if train else pre.test
        if self.mode == "patch_selection" and pre.size % _PATCH != 0:
            raise ValueError(
                f"patch_selection needs size to be a multiple of {_PATCH}, got size={pre.size}"
            )

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(H, W) of every output, or None when the size follows the input (mode 'none')."""
        if self.mode == "none":
            return None
        side = self.pre.size - (self.pre.size % 2 if self.pre.even_crop else 0)
        return (side, side)

    def _geometry(self, img: Image.Image, rng: np.random.Generator | None) -> np.ndarray:
        pre, mode = self.pre, self.mode
        resample = pre.interpolation
        if mode == "center_crop":
            return center_crop(img, pre.size)
        if mode == "random_crop":
            return random_crop(img, pre.size, rng)
        if mode == "resize":
            return np.asarray(_resize(img, (pre.size, pre.size), resample))
        if mode == "resize_center_crop":
            return center_crop(_resize_shorter(img, pre.resize_to, resample), pre.size)
        if mode == "resize_random_crop":
            return random_crop(_resize_shorter(img, pre.resize_to, resample), pre.size, rng)
        if mode == "translate_duplicate":
            return center_crop(translate_duplicate(img, max(pre.resize_to, pre.size)), pre.size)
        if mode == "translate_duplicate_random_crop":
            tiled = translate_duplicate(img, max(pre.resize_to, pre.size))
            return random_crop(tiled, pre.size, rng)
        if mode == "patch_selection":
            grid = pre.size // _PATCH
            n_high = (grid * grid + 1) // 2
            if self.train:
                order_rng = rng
            elif pre.patch_test_shuffle:
                order_rng = image_seed(img, pre.patch_seed)
            else:
                order_rng = None
            selected = select_patches(
                img,
                order_rng,
                patch=_PATCH,
                n_low=grid * grid - n_high,
                n_high=n_high,
                grid=grid,
                rule=pre.patch_entropy,
            )
            return np.asarray(selected)
        if mode == "none":
            return np.asarray(img)
        raise ValueError(f"unknown preprocessing mode {mode!r}")  # pragma: no cover

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Turn one decoded image into a normalised float32 (3, H, W) tensor."""
        if self.train and rng is None:
            raise ValueError("a training transform needs an rng (numpy.random.Generator)")
        img = to_rgb(img)
        if self.train and self.augment is not None:
            img = _augment(img, self.augment, rng)
        arr = self._geometry(img, rng if self.train else None)
        if self.pre.even_crop:
            arr = arr[: arr.shape[0] // 2 * 2, : arr.shape[1] // 2 * 2]
        if self.train and self.pre.flip and rng.random() < 0.5:
            arr = arr[:, ::-1]
        t = to_tensor(arr)
        if self.train and self.augment is not None and self.augment.mask_prob > 0:
            if rng.random() < self.augment.mask_prob:
                t = _mask_patches(t, self.augment, rng)
        return normalize(t, self.pre.normalize)

    def __repr__(self) -> str:
        kind = "train" if self.train else "test"
        return f"Transform({kind}, mode={self.mode!r}, pre={self.pre!r}, augment={self.augment!r})"


def build_transform(
    pre: PreprocessConfig, *, train: bool, augment: AugmentConfig | None = None
) -> Transform:
    """Build the train or test transform described by ``pre`` (and ``augment`` when training).

    ``augment`` is ignored at test time: evaluation never augments.
    """
    return Transform(pre, train=train, augment=augment)


# --------------------------------------------------------------------------- presets


def _p(protocol: str, **fields: Any) -> Preset:
    return Preset(PreprocessConfig.model_validate(fields), protocol)


#: every named protocol; the key is what ``--preprocess NAME`` and config files accept
PRESETS: dict[str, Preset] = {
    "forensynths-resize256": _p(
        "ForenSynths / DiffusionForensics / UnivFD sets in NPR's test.py (no_resize=False, no_crop=True): "
        "torchvision Resize((256, 256)) bilinear on the PIL image, no crop, ImageNet statistics; also "
        "AIGIBench's test script and DFFreq's May 2025 release",
        size=256, test="resize", train="resize_random_crop", resize_to=256, interpolation="bilinear",
        normalize="imagenet"),
    "native": _p(
        "GANGen-Detection in NPR's test.py (no_resize=True, no_crop=True): the decoded image as it is, "
        "ImageNet statistics (images of different sizes are scored one per batch)",
        test="none", train="resize_random_crop", normalize="imagenet"),
    "cnnspot-no-crop": _p(
        "CNNDetection demo.py / demo_dir.py default (no --crop): ToTensor + ImageNet statistics on the "
        "whole image, no resize, no crop",
        test="none", train="resize_random_crop", normalize="imagenet"),
    "cnnspot-center-crop224": _p(
        "CNNDetection eval.py (no_resize=True, no_crop unset): CenterCrop(224) without resizing "
        "(zero-padded when smaller), ImageNet statistics",
        size=224, test="center_crop", train="resize_random_crop", normalize="imagenet"),
    "univfd-center-crop224": _p(
        "UniversalFakeDetect validate.py: CenterCrop(224) without resizing, CLIP statistics",
        size=224, test="center_crop", train="random_crop", normalize="clip"),
    "effort-translate-duplicate": _p(
        "Effort, UniversalFakeDetect-codebase checkpoints: tile small images (never resample) until "
        "both sides reach 256, CenterCrop(224), CLIP statistics",
        size=224, test="translate_duplicate", train="translate_duplicate_random_crop", resize_to=256,
        normalize="clip"),
    "deepfakebench-resize224": _p(
        "Effort, DeepfakeBench-codebase checkpoints (training/demo.py): the whole image resized to "
        "224 x 224 with cv2 INTER_LINEAR (no antialiasing; reproduced bit for bit), CLIP statistics",
        size=224, test="resize", train="resize", interpolation="cv2_linear", normalize="clip"),
    "genimage-translate-duplicate224": _p(
        "NPR on GenImage: tile small images (never resample) until both sides reach 256, then "
        "CenterCrop(224), ImageNet statistics",
        size=224, test="translate_duplicate", train="translate_duplicate_random_crop", resize_to=256,
        normalize="imagenet"),
    "dffreq-center-crop256": _p(
        "DFFreq current release (DFFreq-main data/datasets.py): CenterCrop(256) with no resize "
        "(zero-padded when smaller), ImageNet statistics; training RandomCrop(256) + flip",
        size=256, test="center_crop", train="random_crop", normalize="imagenet"),
    "dgsnet-patch-selection": _p(
        "DGS-Net data/PatchSelectionTransform.py: the 24 lowest- and 25 highest-spectral-entropy 32 x 32 "
        "patches (the code's entropy), shuffled at test time too (here seeded by patch_seed and the "
        "image), tiled 7 x 7 = 224 x 224, ImageNet statistics although the backbone is CLIP",
        size=224, test="patch_selection", train="patch_selection", normalize="imagenet",
        patch_entropy="official", patch_test_shuffle=True),
}


def preset(name: str) -> PreprocessConfig:
    """The ``PreprocessConfig`` of the preset ``name`` (a fresh copy); unknown names list the known ones."""
    try:
        return PRESETS[name].config.model_copy(deep=True)
    except KeyError:
        raise ValueError(
            f"unknown preprocessing preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


def preset_name(config: PreprocessConfig) -> str | None:
    """The name of the preset equal to ``config``, or None."""
    for name, p in PRESETS.items():
        if p.config == config:
            return name
    return None
