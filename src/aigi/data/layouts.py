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

One walker (:func:`walk_files`) lists folders for every command: it follows
symbolic links, cuts loops on ``(st_dev, st_ino)`` and reports them, reports
broken links, folders it cannot list and things that are not regular files
(each as ``(path, message)`` in a ``skipped`` list the caller passes), and counts
a file reached twice once. In a label folder, a file reached through a link into
another label folder counts only under the label of the folder it really is in.
:func:`collect_images` is the file discovery of ``aigi detect``.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .faces import check_box
from .names import name_to_text, text_to_name

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "LayoutError",
    "Sample",
    "Skipped",
    "collect_images",
    "detect_layout",
    "load_samples",
    "subsets_of",
    "walk_files",
]

#: ``(path, message)`` of a file or folder that could not be taken; the message names it.
Skipped = tuple[str, str]

#: extensions ``collect_images`` takes from a folder without sniffing; other files are sniffed
IMAGE_SUFFIXES: Final[frozenset[str]] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif",
     ".avif", ".jfif", ".ppm", ".pgm"}
)

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
    "x0",
    "y0",
    "x1",
    "y1",
)
_BOX_COLUMNS: Final[tuple[str, ...]] = ("x0", "y0", "x1", "y1")  # optional face box, pixels (aigi.data.faces)
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
    box: tuple[float, float, float, float] | None = None  # face box x0, y0, x1, y1 (manifest), cropped by data.faces


class LayoutError(ValueError):
    """A folder or manifest does not match the layout that was asked for."""


# --------------------------------------------------------------------------- walking


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _report(skipped: list[Skipped] | None, path: str | os.PathLike[str], what: str) -> None:
    if skipped is not None:
        skipped.append((str(path), f"cannot read {name_to_text(path)}: {what}"))


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _subdirs(path: Path, skipped: list[Skipped] | None = None) -> list[os.DirEntry]:
    """Non-hidden child directories (symlinks followed), sorted by name.

    A folder that cannot be listed is reported in ``skipped`` (when given).
    """
    try:
        with os.scandir(path) as it:
            entries = [e for e in it if not _is_hidden(e.name) and e.is_dir(follow_symlinks=True)]
    except OSError as exc:
        _report(skipped, path, f"cannot list folder ({_os_reason(exc)})")
        return []
    return sorted(entries, key=lambda e: e.name)


def _find_dirs(
    root: Path,
    match: Callable[[Path], bool],
    max_depth: int | None = None,
    prune: Callable[[Path], bool] | None = None,
    skipped: list[Skipped] | None = None,
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
        for entry in _subdirs(folder, skipped):
            child = Path(entry.path)
            if match(child):
                found.append(child)
            elif prune is not None and prune(child):
                continue
            elif max_depth is None or depth < max_depth:
                walk(child, depth + 1)

    walk(root, 1)
    return sorted(found)


def _real_ancestors(folder: str) -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of ``folder`` and of every folder above its real location."""
    keys: set[tuple[int, int]] = set()
    real = os.path.realpath(folder)
    while True:
        try:
            st = os.stat(real)
            keys.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        parent = os.path.dirname(real)
        if parent == real:
            return keys
        real = parent


def _real_label(path: str, label_dirs: Mapping[str, int]) -> int | None:
    """The label of the nearest label folder above ``path``'s real location, if any.

    GenImage's generic names (``ai``, ``nature``) count only below a ``train``/``val`` folder,
    so a home folder called ``ai`` labels nothing.
    """
    real = os.path.dirname(os.path.realpath(path))
    genimage = set(label_dirs) == set(_GENIMAGE_LABELS)
    while True:
        name = os.path.basename(real)
        parent = os.path.dirname(real)
        if name in label_dirs and (not genimage or os.path.basename(parent) in _GENIMAGE_SPLITS):
            return label_dirs[name]
        if parent == real:
            return None
        real = parent


def walk_files(
    top: str | os.PathLike[str],
    skipped: list[Skipped] | None = None,
    *,
    label_dirs: Mapping[str, int] | None = None,
    seen: set[tuple[int, int]] | None = None,
) -> list[Path]:
    """Every regular, non-hidden file below ``top``, in walk order (sorted names, files of a
    folder before its subfolders); hidden folders are skipped, symbolic links followed.

    Reported in ``skipped`` as ``(path, message)``: a folder that cannot be listed, a
    broken link, a link that loops back to a folder above it (not followed), anything
    that is not a regular file or folder (FIFOs, devices, sockets: opening one could
    block). A folder or file reached twice (two links) is taken once; ``seen`` (file
    ``(st_dev, st_ino)`` keys) extends that across calls. With ``label_dirs`` (label
    folder name -> label, ``top`` being such a folder), a file reached through a link
    whose real location is in a label folder of another label is left out here: it
    counts under the folder it really is in.
    """
    top_path = Path(top)
    try:
        st = os.stat(top_path)
    except OSError as exc:
        what = "broken symbolic link" if os.path.islink(top_path) else f"cannot open folder ({_os_reason(exc)})"
        _report(skipped, top_path, what)
        return []
    if not stat.S_ISDIR(st.st_mode):
        _report(skipped, top_path, "not a folder")
        return []
    own_label = None if label_dirs is None else label_dirs.get(top_path.name)
    files: list[Path] = []
    seen_files = seen if seen is not None else set()
    seen_dirs = {(st.st_dev, st.st_ino)}
    # (folder, its ancestors' keys, reached through a link)
    stack: list[tuple[Path, frozenset[tuple[int, int]], bool]] = [
        (top_path, frozenset(_real_ancestors(os.fspath(top_path))), False)
    ]
    while stack:
        folder, ancestors, via_link = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            _report(skipped, folder, f"cannot list folder ({_os_reason(exc)})")
            continue
        below: list[tuple[Path, frozenset[tuple[int, int]], bool]] = []
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            path = Path(entry.path)
            try:
                is_link = entry.is_symlink()
                est = os.stat(entry.path)  # follows links
            except OSError as exc:
                if os.path.islink(entry.path) and not os.path.exists(entry.path):
                    _report(skipped, path, "broken symbolic link (its target does not exist)")
                else:
                    _report(skipped, path, f"cannot stat ({_os_reason(exc)})")
                continue
            key = (est.st_dev, est.st_ino)
            if stat.S_ISDIR(est.st_mode):
                if key in ancestors:
                    _report(skipped, path, "symbolic link loop: it leads back to a folder above it (not followed)")
                elif key not in seen_dirs:
                    seen_dirs.add(key)
                    below.append((path, ancestors | {key}, via_link or is_link))
            elif stat.S_ISREG(est.st_mode):
                if key in seen_files:
                    continue
                if (own_label is not None and (via_link or is_link)
                        and _real_label(entry.path, label_dirs or {}) not in (None, own_label)):
                    continue  # really in a label folder of the other label: counted there
                seen_files.add(key)
                files.append(path)
            else:
                _report(skipped, path, "not a regular file (a FIFO, device or socket)")
        stack.extend(reversed(below))
    return files


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
    label_dirs: Iterable[Path],
    base: Path,
    labels: dict[str, int],
    with_generator: bool,
    skipped: list[Skipped] | None = None,
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
        for file in walk_files(folder, skipped, label_dirs=labels):
            samples.append(Sample(path=file, label=label, subset=subset, generator=generator))
    return samples


def _load_subsets(root: Path, skipped: list[Skipped] | None = None) -> list[Sample]:
    return _label_dir_samples(
        _find_dirs(root, _is_subset_label_dir, skipped=skipped), root, _SUBSET_LABELS,
        with_generator=False, skipped=skipped,
    )


def _load_genimage(root: Path, split: str, skipped: list[Skipped] | None = None) -> list[Sample]:
    dirs = _find_dirs(root, lambda p: _is_genimage_label_dir(p, (split,)), skipped=skipped)
    return _label_dir_samples(dirs, root, _GENIMAGE_LABELS, with_generator=True, skipped=skipped)


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


def _inside(path: Path, base: Path) -> bool:
    """Whether ``path`` is ``base`` or below it, by the names alone (``..`` resolved, links not)."""
    p = os.path.normpath(os.path.abspath(path))
    b = os.path.normpath(os.path.abspath(base))
    return p == b or p.startswith(b.rstrip(os.sep) + os.sep)


def _parse_box(row: dict[str, object], where: str) -> tuple[float, float, float, float] | None:
    """The optional face box (all four of x0, y0, x1, y1, or none)."""
    values = [_opt_str(row.get(c)) for c in _BOX_COLUMNS]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        given = ", ".join(f"{c}={v!r}" for c, v in zip(_BOX_COLUMNS, values))
        raise LayoutError(f"{where}: a face box needs all of x0, y0, x1, y1 (or none of them), got {given}")
    try:
        return check_box(values, where)
    except ValueError as err:
        raise LayoutError(str(err)) from None


def _manifest_sample(row: dict[str, object], base: Path, where: str, allow_outside: bool = False) -> Sample:
    raw_path = _opt_str(row.get("path"))
    if raw_path is None:
        raise LayoutError(f"{where}: empty path")
    path = Path(os.path.expanduser(text_to_name(raw_path)))
    if not path.is_absolute():
        path = base / path
    if not allow_outside and not _inside(path, base):
        raise LayoutError(
            f"{where}: path {name_to_text(raw_path)!r} is outside the manifest's folder "
            f"{name_to_text(base)}; manifests may only name files below their own folder "
            f"(pass --allow-outside, or allow_outside=True, if this is intended)"
        )
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
        box=_parse_box(row, where),
    )


def _check_columns(columns: Iterable[str], source: Path, where: str) -> None:
    columns = list(columns)
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise LayoutError(
            f"{source}{where}: missing required column(s) {', '.join(missing)}; "
            f"found columns: {', '.join(columns) if columns else '(none)'}; "
            f"required: path, label; optional: generator, family, caption, subset, x0, y0, x1, y1 (face box)"
        )


def _load_csv(manifest: Path, allow_outside: bool = False) -> list[Sample]:
    base = manifest.parent
    samples: list[Sample] = []
    # surrogateescape: a path column holding raw non-UTF-8 bytes names exactly that file
    with open(manifest, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
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
            samples.append(_manifest_sample(dict(zip(columns, row)), base, where, allow_outside))
    return samples


def _load_jsonl(manifest: Path, allow_outside: bool = False) -> list[Sample]:
    base = manifest.parent
    samples: list[Sample] = []
    with open(manifest, encoding="utf-8-sig", errors="surrogateescape") as fh:
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
            samples.append(_manifest_sample(row, base, where, allow_outside))
    return samples


def load_samples(
    root: str | os.PathLike[str],
    layout: str = "auto",
    split: str | None = None,
    *,
    skipped: list[Skipped] | None = None,
    allow_outside: bool = False,
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
      generator, else "all". Optional face box ``x0, y0, x1, y1`` (pixels, all
      four or none): the image is cropped around it (:mod:`aigi.data.faces`).

    For subsets and progan a ``split`` selects the ``root/<split>`` folder.
    Manifests take no ``split``; their paths (text form of
    :mod:`aigi.data.names`) must lie below the manifest's folder unless
    ``allow_outside``. Folders that cannot be listed, broken links, link loops
    and non-regular files are appended to ``skipped`` as ``(path, message)``
    (see :func:`walk_files`); pass a list to learn about them. Raises
    :class:`LayoutError` when the layout does not match, a manifest row is bad
    (with its line number), or no image is found.
    """
    found_skipped: list[Skipped] = []
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
            samples = _load_csv(root, allow_outside)
        elif suffix == ".jsonl":
            samples = _load_jsonl(root, allow_outside)
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
        samples = _load_genimage(root, chosen, found_skipped)
        what = f"{chosen}/{{ai,nature}}/ folders"
    else:
        base = root
        if split is not None:
            base = root / split
            if not base.is_dir():
                raise LayoutError(f"split folder {base} does not exist; found: {_preview(root)}")
        if layout == "progan":
            base = _progan_base(base)
        samples = _load_subsets(base, found_skipped)
        what = "0_real/ or 1_fake/ folders"

    if skipped is not None:
        skipped.extend(found_skipped)
    if not samples:
        unread = ""
        if found_skipped:
            unread = f"; {len(found_skipped)} could not be read, e.g. {found_skipped[0][1]}"
        raise LayoutError(
            f"no images found under {root} for layout {layout!r}: looked for files in "
            f"{what}; found: {_preview(root)}{unread}"
        )
    samples.sort(key=lambda s: str(s.path))
    return samples


def subsets_of(samples: Iterable[Sample]) -> list[str]:
    """The sorted unique subset names of ``samples``."""
    return sorted({s.subset for s in samples})


def collect_images(
    paths: Iterable[str | os.PathLike[str]],
    skipped: list[Skipped] | None = None,
) -> tuple[list[Path], list[Skipped]]:
    """The files of ``aigi detect``: files named directly, and images found in folders.

    A file named directly is always taken (if it cannot be read, decoding reports it like
    any other). In folders (walked by :func:`walk_files`), files with an image extension
    are taken and other files only when their content sniffs as an image, so a README
    beside the photos is ignored without a word. A file reached twice is taken once.
    Returns ``(files, skipped)``: ``skipped`` lists, as ``(path, message)``, paths that do
    not exist or cannot be looked at, folders that cannot be listed, broken links, link
    loops and non-regular files (extending the list passed in, if any).
    """
    from .io import sniff_is_image

    out_skipped = skipped if skipped is not None else []
    files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for raw in paths:
        p = Path(raw)
        try:
            st = os.stat(p)
        except OSError as exc:
            if os.path.islink(p):
                what = "broken symbolic link (its target does not exist)"
            elif isinstance(exc, FileNotFoundError):
                what = "no such file or folder"
            else:
                what = f"cannot look at it ({_os_reason(exc)})"
            _report(out_skipped, p, what)
            continue
        if stat.S_ISDIR(st.st_mode):
            for f in walk_files(p, out_skipped, seen=seen):
                if f.suffix.lower() in IMAGE_SUFFIXES or sniff_is_image(f):
                    files.append(f)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                files.append(p)
        else:
            _report(out_skipped, p, "not a regular file (a FIFO, device or socket)")
    return files, out_skipped
