"""Name → detector class map, filled by the ``@register`` decorator in each method's module.

One name builds a detector (the timm habit): ``create_detector("effort", backbone="tiny")``.
Each registration also names the task its paper targets (:data:`TASKS`): AI-generated images
(whole-image synthesis) or face forgery (deepfake face swaps and reenactment, evaluated on face
crops); ``aigi list`` shows it, because a face-forgery method's published numbers say nothing
about whole-image generators and the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Final, TypeVar

if TYPE_CHECKING:
    from .base import Detector

#: the tasks a detector's paper can target
AIGI: Final[str] = "AI-generated images"
FACE_FORGERY: Final[str] = "face forgery"
TASKS: Final[tuple[str, ...]] = (AIGI, FACE_FORGERY)

_REGISTRY: dict[str, type["Detector"]] = {}
_TASKS: dict[str, tuple[str, ...]] = {}
D = TypeVar("D", bound="type[Detector]")


def register(name: str, *, task: str | tuple[str, ...] = AIGI) -> Callable[[D], D]:
    """Class decorator: make a Detector subclass buildable by ``name``.

    ``task`` is what the method's paper targets, one of :data:`TASKS` or a tuple of them (a
    paper that evaluates on both).
    """
    tasks = (task,) if isinstance(task, str) else tuple(task)
    bad = [t for t in tasks if t not in TASKS]
    if not tasks or bad:
        raise ValueError(f"detector {name!r}: task must be one or more of {TASKS}, got {task!r}")

    def wrap(cls: D) -> D:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"detector name {name!r} is registered twice")
        cls.method = name
        _REGISTRY[name] = cls
        _TASKS[name] = tasks
        return cls

    return wrap


def _ensure_loaded() -> None:
    # Importing the package imports every method module, which registers them.
    from . import _all  # noqa: F401


def detector_class(name: str) -> type["Detector"]:
    """The class registered under ``name``; a clear error listing the known names otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown detector {name!r}; registered detectors: {known}") from None


def list_detectors() -> dict[str, str]:
    """Registered names with the first line of each class docstring."""
    _ensure_loaded()
    out = {}
    for name in sorted(_REGISTRY):
        doc = (_REGISTRY[name].__doc__ or "").strip().splitlines()
        out[name] = doc[0] if doc else ""
    return out


def detector_tasks() -> dict[str, tuple[str, ...]]:
    """Registered names with the task(s) their papers target (see :data:`TASKS`)."""
    _ensure_loaded()
    return {name: _TASKS[name] for name in sorted(_REGISTRY)}


def create_detector(name: str, **overrides: Any) -> "Detector":
    """Build a registered detector from its default config updated with ``overrides``.

    Overrides are config fields (``threshold=0.3``); nested fields take a dict or a
    dotted key (``**{"preprocess.test": "resize"}``). ``backbone`` accepts a plain string
    (hub id, local folder or preset name) as a shorthand for ``backbone.source``.
    """
    cls = detector_class(name)
    config = cls.config_class.from_overrides(overrides)
    return cls(config)
