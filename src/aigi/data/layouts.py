"""Find labelled images in the folder layouts and manifests the field uses.

Supported layouts (see :func:`load_samples` for the exact rules):

* ``subsets``  -- ``<root>/<subset>/.../{0_real,1_fake}/*`` (ForenSynths, CNNSpot,
  UnivFD, AIGIBench, AIGCDetectBenchmark);
* ``progan``   -- the ProGAN training tree ``<root>/<class>/{0_real,1_fake}/*``
  (or ``<root>/train/<class>/...``), one subset per class;
* ``genimage`` -- ``<root>/<generator>/.../{train,val}/{ai,nature}/*``;
* ``manifest`` -- a CSV (with header) or JSONL file with ``path`` and ``label``.

Files are never filtered by extension: every regular, non-hidden file inside a
label folder is a sample, and files that do not decode are reported by the
dataset later. Labels: 0 real, 1 fake, ``None`` unknown.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "LAYOUTS",
    "LayoutError",
    "Sample",
    "detect_layout",
    "load_samples",
    "subsets_of",
]

LAYOUTS: Final[tuple[str, ...]] = ("subsets", "progan", "genimage", "manifest")

_SUBSET_LABELS: Final[dict[str, int]] = {"0_real": 0, "1_fake": 1}
_GENIMAGE_LABELS: Final[dict[str, int]] = {"nature": 0, "ai": 1}
_GENIMAGE_SPLITS: Final[tuple[str, ...]] = ("train", "val")
_MANIFEST_SUFFIXES: Final[tuple[str, ...]] = (".csv", ".jsonl")
_MANIFEST_COLUMNS: Final[tuple[str, ...]] = (
    "path",
    "label",
    "generator",
    "family",
    "caption",
    "subset",
)
_LABEL_WORDS: Final[dict[str, int]] = {"0": 0, "1": 1, "real": 0, "fake": 1}


@dataclass(frozen=True)
class Sample:
    """One image: where it is, its label (0 real, 1 fake, None unknown) and grouping."""

    path: Path
    label: int | None
    subset: str
    generator: str | None = None
    family: str | None = None
    caption: str | None = None


class LayoutError(ValueError):
    """A folder or manifest does not match the layout that was asked for."""


# --------------------------------------------------------------------------- walking


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _subdirs(path: Path) -> list[os.DirEntry]:
    """Non-hidden child directories (symlinks followed), sorted by name."""
    try:
        with os.scandir(path) as it:
            entries = [e for e in it if not _is_hidden(e.name) and e.is_dir(follow_symlinks=True)]
    except OSError:
        return []
    return sorted(entries, key=lambda e: e.name)


def _find_dirs(
    root: Path,
    match: Callable[[Path], bool],
    max_depth: int | None = None,
    prune: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """Directories below ``root`` (not root itself) for which ``match(path)`` holds.

    Matching directories (and those ``prune`` rejects) are not descended into,
    so the (possibly huge) label folders are never listed here. Hidden folders
    are skipped and symlink cycles are cut by remembering resolved paths.
    """
    found: list[Path] = []
    seen: set[str] = set()

    def walk(folder: Path, depth: int) -> None:
        try:
            real = os.path.realpath(folder)
        except OSError:
            return
        if real in seen:
            return
        seen.add(real)
        for entry in _subdirs(folder):
            child = Path(entry.path)
            if match(child):
                found.append(child)
            elif prune is not None and prune(child):
                continue
            elif max_depth is None or depth < max_depth:
                walk(child, depth + 1)

    walk(root, 1)
    return sorted(found)


def _files_below(folder: Path) -> Iterator[Path]:
    """Every regular non-hidden file below ``folder`` (recursive, hidden dirs skipped)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        for fname in filenames:
            if _is_hidden(fname):
                continue
            full = Path(dirpath) / fname
            if full.is_file():
                yield full


def _is_subset_label_dir(path: Path) -> bool:
    return path.name in _SUBSET_LABELS


def _is_genimage_label_dir(path: Path, splits: Sequence[str] = _GENIMAGE_SPLITS) -> bool:
    return path.name in _GENIMAGE_LABELS and path.parent.name in splits


def _preview(root: Path, limit: int = 8) -> str:
    """A short listing of ``root``'s children for error messages."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    except OSError as exc:
        return f"(cannot list: {exc})"
    if not names:
        return "(empty folder)"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# --------------------------------------------------------------------------- detection


def detect_layout(root: str | os.PathLike[str]) -> str:
    """Guess the layout of ``root``: "manifest", "genimage" or "subsets".

    A ``.csv``/``.jsonl`` file is a manifest; a folder with
    ``{train,val}/{ai,nature}`` folders below it is GenImage; a folder with
    ``0_real``/``1_fake`` folders at any depth is "subsets" (the ProGAN
    training tree has the same shape; ask for "progan" explicitly to get one
    subset per class). Raises :class:`LayoutError` describing what was found.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in _MANIFEST_SUFFIXES:
            return "manifest"
        raise LayoutError(
            f"{root} is a file but not a manifest: expected a .csv or .jsonl file, "
            f"got suffix {root.suffix or '(none)'!r}"
        )
    if not root.is_dir():
        raise LayoutError(f"{root} does not exist")
    # GenImage first: its generator folders sit a few levels above {train,val}/{ai,nature}.
    label_dir_names = set(_SUBSET_LABELS) | set(_GENIMAGE_LABELS)
    if _find_dirs(
        root,
        _is_genimage_label_dir,
        max_depth=5,
        prune=lambda p: p.name in label_dir_names,
    ):
        return "genimage"
    if _find_dirs(root, _is_subset_label_dir):
        return "subsets"
    raise LayoutError(
        f"cannot detect the layout of {root}: looked for 0_real/ or 1_fake/ folders "
        f"(subsets, progan), {{train,val}}/{{ai,nature}}/ folders (genimage), or a "
        f".csv/.jsonl manifest file; found: {_preview(root)}. Pass layout=... "
        f"explicitly or write a manifest."
    )


# --------------------------------------------------------------------------- loaders


def _first_component(path: Path, base: Path) -> str:
    """The first folder of ``path`` relative to ``base``; ``base``'s name if directly in it."""
    rel = path.relative_to(base)
    return rel.parts[0] if len(rel.parts) > 1 else base.name


def _label_dir_samples(
    label_dirs: Iterable[Path], base: Path, labels: dict[str, int], with_generator: bool
) -> list[Sample]:
    samples: list[Sample] = []
    for folder in label_dirs:
        label = labels[folder.name]
        # subset: first component of the label folder's path relative to base, or
        # base's own name when the label folder (or its split folder) is directly in it.
        if with_generator:  # genimage: <base>/<gen>/.../<split>/<label>
            parts = folder.parent.relative_to(base).parts
            subset = parts[0] if len(parts) > 1 else base.name
        else:
            subset = _first_component(folder, base)
        generator = subset if with_generator else None
        for file in _files_below(folder):
            samples.append(Sample(path=file, label=label, subset=subset, generator=generator))
    return samples


def _load_subsets(root: Path) -> list[Sample]:
    return _label_dir_samples(
        _find_dirs(root, _is_subset_label_dir), root, _SUBSET_LABELS, with_generator=False
    )


def _load_genimage(root: Path, split: str) -> list[Sample]:
    dirs = _find_dirs(root, lambda p: _is_genimage_label_dir(p, (split,)))
    return _label_dir_samples(dirs, root, _GENIMAGE_LABELS, with_generator=True)


def _progan_base(root: Path) -> Path:
    children = _subdirs(root)
    if len(children) == 1 and children[0].name == "train":
        return root / "train"
    return root


def _parse_label(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise LayoutError(f"{where}: label must be 0/1 or real/fake, got {value!r}")
    if isinstance(value, (int, float)):
        if value in (0, 1):
            return int(value)
        raise LayoutError(f"{where}: label must be 0/1 or real/fake, got {value!r}")
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in _LABEL_WORDS:
        return _LABEL_WORDS[text]
    raise LayoutError(f"{where}: label must be 0/1 or real/fake, got {value!r}")


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _manifest_sample(row: dict[str, object], base: Path, where: str) -> Sample:
    raw_path = _opt_str(row.get("path"))
    if raw_path is None:
        raise LayoutError(f"{where}: empty path")
    path = Path(os.path.expanduser(raw_path))
    if not path.is_absolute():
        path = base / path
    label = _parse_label(row.get("label"), where)
    generator = _opt_str(row.get("generator"))
    subset = _opt_str(row.get("subset")) or generator or "all"
    caption = row.get("caption")
    caption = None if caption is None or str(caption) == "" else str(caption)
    return Sample(
        path=path,
        label=label,
        subset=subset,
        generator=generator,
        family=_opt_str(row.get("family")),
        caption=caption,
    )


def _check_columns(columns: Iterable[str], source: Path, where: str) -> None:
    columns = list(columns)
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise LayoutError(
            f"{source}{where}: missing required column(s) {', '.join(missing)}; "
            f"found columns: {', '.join(columns) if columns else '(none)'}; "
            f"required: path, label; optional: generator, family, caption, subset"
        )


def _load_csv(manifest: Path) -> list[Sample]:
    base = manifest.parent
    samples: list[Sample] = []
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise LayoutError(f"{manifest}: empty manifest (no header row)") from None
        columns = [h.strip().lower() for h in header]
        _check_columns(columns, manifest, " (header, line 1)")
        for row in reader:
            where = f"{manifest}: line {reader.line_num}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise LayoutError(f"{where}: expected {len(columns)} fields, got {len(row)}")
            samples.append(_manifest_sample(dict(zip(columns, row)), base, where))
    return samples


def _load_jsonl(manifest: Path) -> list[Sample]:
    base = manifest.parent
    samples: list[Sample] = []
    with open(manifest, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{manifest}: line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LayoutError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise LayoutError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            row = {str(k).strip().lower(): v for k, v in obj.items()}
            _check_columns(row.keys(), manifest, f": line {lineno}")
            samples.append(_manifest_sample(row, base, where))
    return samples


def load_samples(
    root: str | os.PathLike[str],
    layout: str = "auto",
    split: str | None = None,
) -> list[Sample]:
    """List the labelled images under ``root`` in a deterministic order.

    Folder layouts return samples sorted by path; a manifest keeps its row
    order. Rules:

    * ``subsets``: every ``0_real``/``1_fake`` folder at any depth; ``subset``
      is the first folder below ``root`` (``root``'s own name when the label
      folder sits directly in it). Files are taken recursively, hidden ones
      skipped, none filtered by extension.
    * ``progan``: as subsets for ``<root>/<class>/...``; when ``root``'s only
      child folder is ``train`` the classes are read from ``root/train``.
    * ``genimage``: ``<root>/<generator>/.../<split>/{ai,nature}/*`` with
      ``split`` "train" or "val" (default "val", the evaluation split); ai is 1,
      nature 0; ``subset`` and ``generator`` are the generator folder.
    * ``manifest``: CSV with header or JSONL; ``path`` (relative to the
      manifest's folder, or absolute) and ``label`` (0/1/real/fake; empty or
      null means unknown) required; ``generator``, ``family``, ``caption``,
      ``subset`` optional, other columns ignored; ``subset`` defaults to the
      generator, else "all".

    For subsets and progan a ``split`` selects the ``root/<split>`` folder.
    Manifests take no ``split``. Raises :class:`LayoutError` when the layout
    does not match, a manifest row is bad (with its line number), or no image
    is found.
    """
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)} or 'auto'")

    if layout == "manifest":
        if split is not None:
            raise LayoutError("split is not supported for manifests; list one split per manifest")
        if not root.is_file():
            raise LayoutError(f"manifest {root} is not a file")
        suffix = root.suffix.lower()
        if suffix == ".csv":
            samples = _load_csv(root)
        elif suffix == ".jsonl":
            samples = _load_jsonl(root)
        else:
            raise LayoutError(f"manifest {root} must end in .csv or .jsonl")
        if not samples:
            raise LayoutError(f"manifest {root} lists no images")
        return samples

    if not root.is_dir():
        raise LayoutError(f"{root} is not a folder (layout {layout!r} expects one)")

    if layout == "genimage":
        chosen = "val" if split is None else split
        if chosen not in _GENIMAGE_SPLITS:
            raise LayoutError(f"genimage split must be 'train' or 'val', got {split!r}")
        samples = _load_genimage(root, chosen)
        what = f"{chosen}/{{ai,nature}}/ folders"
    else:
        base = root
        if split is not None:
            base = root / split
            if not base.is_dir():
                raise LayoutError(f"split folder {base} does not exist; found: {_preview(root)}")
        if layout == "progan":
            base = _progan_base(base)
        samples = _load_subsets(base)
        what = "0_real/ or 1_fake/ folders"

    if not samples:
        raise LayoutError(
            f"no images found under {root} for layout {layout!r}: looked for files in "
            f"{what}; found: {_preview(root)}"
        )
    samples.sort(key=lambda s: str(s.path))
    return samples


def subsets_of(samples: Iterable[Sample]) -> list[str]:
    """The sorted unique subset names of ``samples``."""
    return sorted({s.subset for s in samples})
