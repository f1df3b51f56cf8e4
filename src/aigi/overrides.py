"""The one ``key=value`` override parser, and the config types shared by several files.

Recipes (``aigi train R.yaml optimizer.lr=0.1``), benchmark protocols
(``aigi bench P.yaml detectors.npr.model=runs/npr``) and detector configs
(``create_detector("npr", **{"preprocess.size": 64})``) all change a nested mapping the
same way:

* ``a.b.c=value`` walks mappings by key; a missing or null section on the way becomes ``{}``;
* inside a list, a part is an index (``detectors.0``) or, in a list of named entries, the
  entry's ``name`` (``detectors.npr``);
* the value is read as YAML (``3`` is an int, ``[1, 2]`` a list, ``null`` None, ``abc`` a
  string), the way it would be written in the file;
* with ``model`` given, every key is checked against that pydantic model *before*
  anything is set, so a misspelt key is an error that names it, lists the fields that do
  exist and suggests the closest; values are then checked by the model's own validation.

Messages name the override as the user typed it.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Layout",
    "OverrideError",
    "StrictModel",
    "TrainData",
    "apply_overrides",
    "check_key",
    "parse_override",
    "parse_value",
    "set_key",
]

#: the data layouts every data section accepts (see :mod:`aigi.data.layouts`)
Layout = Literal["auto", "subsets", "progan", "genimage", "manifest"]


class StrictModel(BaseModel):
    """Base of the YAML-facing config sections: an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class TrainData(StrictModel):
    """Where training images come from: a recipe's ``data`` and a protocol's ``training_data``."""

    train: str = Field(..., description="folder or manifest of training images (relative paths: to the file)")
    layout: Layout = "auto"
    split: str | None = Field(None, description="GenImage split to read (default train)")
    subsets: list[str] | None = Field(None, description="keep only these subsets (ProGAN classes, generators)")


class OverrideError(ValueError):
    """An override that cannot be applied; the message quotes it and says why."""


def parse_value(text: str) -> Any:
    """Read an override's value as YAML (a scalar, a list or a mapping)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise OverrideError(f"value {text!r} is not valid YAML: {first}") from None


def parse_override(pair: str, *, error: type[ValueError] = OverrideError) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into ``(["a", "b"], parsed value)``."""
    if not isinstance(pair, str) or "=" not in pair:
        raise error(f"override {pair!r} is not of the form key=value")
    key, text = pair.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise error(f"override {pair!r}: the key {key.strip()!r} has an empty part")
    try:
        value = parse_value(text)
    except OverrideError as err:
        raise error(f"override {pair!r}: {err}") from None
    return parts, value


# --------------------------------------------------------------------------- setting


def _list_index(node: list, part: str, pair: str, error: type[ValueError]) -> int:
    if part.isdigit():
        idx = int(part)
        if idx >= len(node):
            raise error(f"override {pair!r}: index {idx} is past the end of a list of {len(node)}")
        return idx
    for i, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    names = [item.get("name") for item in node if isinstance(item, dict)]
    raise error(f"override {pair!r}: no entry named {part!r}; entries: {names}")


def set_key(data: Any, parts: list[str], value: Any, *, pair: str = "", merge: bool = False,
            error: type[ValueError] = OverrideError) -> None:
    """Set ``value`` at the path ``parts`` inside ``data`` (mappings and lists).

    ``merge=True`` merges a mapping ``value`` into a mapping already there, key by key
    (its keys may be dotted too) instead of replacing it.
    """
    pair = pair or ".".join(parts)
    node = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, part, pair, error)]
            continue
        if not isinstance(node, dict):
            raise error(f"override {pair!r}: {'.'.join(parts[:i]) or part!r} is not a section")
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], (dict, list)):
            raise error(f"override {pair!r}: {'.'.join(parts[: i + 1])!r} is not a section")
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, pair, error)] = value
    elif isinstance(node, dict):
        if merge and isinstance(value, dict) and isinstance(node.get(last), dict):
            merged = dict(node[last])
            for k, v in value.items():
                set_key(merged, str(k).split("."), v, pair=pair, merge=True, error=error)
            node[last] = merged
        else:
            node[last] = value
    else:
        raise error(f"override {pair!r}: {'.'.join(parts[:-1])!r} is not a section")


# --------------------------------------------------------------------------- checking


def _model_types(annotation: Any) -> list[Any]:
    """The members of a (possibly optional or union) annotation, without None."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _model_types(typing.get_args(annotation)[0])
    return [annotation]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _child_types(tp: Any, part: str) -> list[Any] | None:
    """Types reached from ``tp`` through key ``part``; None means ``part`` is not there."""
    if _is_model(tp):
        fields = tp.model_fields
        by_alias = {f.alias: name for name, f in fields.items() if f.alias}
        name = part if part in fields else by_alias.get(part)
        if name is None:
            if tp.model_config.get("extra") == "allow":
                return [Any]
            return None
        return _model_types(fields[name].annotation)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return _model_types(args[int(part)]) if part.isdigit() and int(part) < len(args) else None
        return _model_types(args[0]) if args else [Any]
    if origin in (dict, Mapping) or tp is dict:
        return _model_types(args[1]) if len(args) == 2 else [Any]
    if origin is Literal or tp in (int, float, str, bool, bytes, type(None)):
        return None  # a scalar has no keys below it
    return [Any]  # Any or something unusual: the model's own validation decides


def check_key(model: type[BaseModel], parts: list[str], *, pair: str = "", flat: Iterable[str] = (),
              error: type[ValueError] = OverrideError) -> None:
    """Raise ``error`` naming the first part of ``parts`` that is not a field of ``model``.

    Walks nested models, optional and union fields, lists (index or entry name) and
    mappings; ``Any`` and plain mappings accept every key below them. ``flat`` names
    top-level fields whose sub-keys are opaque (a mapping of dotted keys).
    """
    pair = pair or ".".join(parts)
    current: list[Any] = [model]
    for i, part in enumerate(parts):
        if i == 1 and parts[0] in set(flat):
            return
        if any(tp is Any for tp in current):
            return
        reached: list[Any] = []
        for tp in current:
            found = _child_types(tp, part)
            if found is not None:
                reached.extend(found)
        if not reached:
            models = [tp for tp in current if _is_model(tp)]
            where = ".".join(parts[:i]) or "the top level"
            if not models:
                raise error(f"override {pair!r}: {where} has no key {part!r}")
            names = sorted({n for m in models for n in m.model_fields})
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(
                f"override {pair!r}: unknown key {part!r} in {where}{hint}; known keys: {', '.join(names)}"
            )
        current = reached


def _items(pairs: Iterable[str] | Mapping[str, Any], error: type[ValueError]) -> list[tuple[str, list[str], Any]]:
    if isinstance(pairs, Mapping):
        return [(str(k), str(k).split("."), v) for k, v in pairs.items()]
    if isinstance(pairs, str):
        raise error(f"overrides must be a list of key=value strings, got the string {pairs!r}")
    out = []
    for pair in pairs:
        parts, value = parse_override(pair, error=error)
        out.append((pair, parts, value))
    return out


def _check_value(model: type[BaseModel], parts: list[str], value: Any, pair: str, flat: Iterable[str],
                 error: type[ValueError]) -> None:
    check_key(model, parts, pair=pair, flat=flat, error=error)
    if isinstance(value, dict) and not (parts and parts[0] in set(flat)):
        for k, v in value.items():
            _check_value(model, parts + str(k).split("."), v, pair, flat, error)


def apply_overrides(
    data: dict[str, Any],
    pairs: Iterable[str] | Mapping[str, Any],
    *,
    model: type[BaseModel] | None = None,
    flat: Iterable[str] = (),
    merge: bool = False,
    error: type[ValueError] = OverrideError,
) -> dict[str, Any]:
    """Apply overrides to the mapping ``data`` in place and return it.

    ``pairs`` is a list of ``"a.b=value"`` strings (values read as YAML) or a mapping of
    dotted keys to values already parsed. ``model`` checks every key first (see
    :func:`check_key`); a mapping value's own keys are checked too when ``merge`` is on.
    ``flat`` names top-level sections whose remaining key is kept as one dotted entry
    (``overrides.preprocess.size=64`` sets ``data["overrides"]["preprocess.size"]``).
    ``error`` is the exception class raised, so each caller keeps its own.
    """
    if not isinstance(data, dict):
        raise error(f"overrides apply to a mapping, got {type(data).__name__}")
    flat = tuple(flat)
    items = _items(pairs, error)
    if model is not None:  # every key first: a bad one leaves ``data`` untouched
        for pair, parts, value in items:
            if merge:
                _check_value(model, parts, value, pair, flat, error)
            else:
                check_key(model, parts, pair=pair, flat=flat, error=error)
    for pair, parts, value in items:
        if parts[0] in flat and len(parts) > 1:
            section = data.get(parts[0])
            if section is None:
                section = data[parts[0]] = {}
            if not isinstance(section, dict):
                raise error(f"override {pair!r}: {parts[0]!r} is not a section")
            section[".".join(parts[1:])] = value
            continue
        set_key(data, parts, value, pair=pair, merge=merge, error=error)
    return data
