"""The server's memory budget: every request pays for its bytes and its pixels before it uses them.

A request reserves, against one budget shared by all requests:

* the bytes of its body: the declared ``Content-Length`` before a byte is read, or, for a
  body without one, each chunk as it arrives;
* for each image, before it is decoded, ``width x height x DECODE_BYTES_PER_PIXEL`` from
  the image's header (:func:`aigi.data.io.image_size`); the reservation, and the upload's
  bytes, are given back as soon as the image is preprocessed.

When a reservation does not fit, :class:`~aigi.serve.batching.Overloaded` is raised and
the API answers 503 with ``Retry-After``; a request that fails or finishes gives back
everything it held. After :func:`return_freed_memory`, when the budget drains to zero (at
most once a second) :func:`trim` returns the free pages glibc's heaps still hold, so the
process shrinks after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time

from ..data.io import DECODE_BYTES_PER_PIXEL, image_size
from .batching import Overloaded

__all__ = ["MemoryBudget", "Reservation", "pixel_cost", "return_freed_memory"]

MiB = 1024 * 1024


def pixel_cost(data: bytes | bytearray, max_pixels: int) -> int:
    """Bytes that decoding and preprocessing ``data`` will take at its peak (0 when the header
    is unreadable or over ``max_pixels``: decoding then fails before allocating pixels)."""
    size = image_size(data)
    if size is None:
        return 0
    pixels = size[0] * size[1]
    return 0 if pixels > max_pixels else pixels * DECODE_BYTES_PER_PIXEL


class MemoryBudget:
    """A thread-safe byte budget; :meth:`reservation` opens one request's account."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"memory budget must be positive, got {limit}")
        self.limit = int(limit)
        self.used = 0
        self.peak = 0
        self.rejected = 0
        self._lock = threading.Lock()
        self._last_trim = 0.0

    def _take(self, n: int, what: str) -> None:
        with self._lock:
            if self.used + n > self.limit:
                self.rejected += 1
                if n > self.limit:
                    raise Overloaded(f"{what} needs {n / MiB:.1f} MiB, more than the whole memory budget "
                                     f"({self.limit / MiB:.0f} MiB)")
                raise Overloaded(f"server busy: {what} needs {n / MiB:.1f} MiB and "
                                 f"{(self.limit - self.used) / MiB:.1f} of {self.limit / MiB:.0f} MiB are free")
            self.used += n
            self.peak = max(self.peak, self.used)

    def _give(self, n: int) -> None:
        with self._lock:
            self.used -= n
            idle = self.used == 0
        now = time.monotonic()
        if idle and now - self._last_trim > 1.0:  # the server went idle: hand the heaps' free pages back
            self._last_trim = now
            trim()

    def reservation(self) -> "Reservation":
        """A new, empty account; use it as a context manager so it is always given back."""
        return Reservation(self)

    def as_dict(self) -> dict[str, int]:
        return {"limit_bytes": self.limit, "used_bytes": self.used, "peak_bytes": self.peak,
                "rejected": self.rejected}


class Reservation:
    """What one request holds of a :class:`MemoryBudget`."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0
        self.closed = False
        self._lock = threading.Lock()

    def grow(self, n: int, what: str = "this request") -> None:
        """Hold ``n`` more bytes, or raise :class:`Overloaded` (also once closed: a request that
        timed out must not go on taking memory in a worker thread)."""
        with self._lock:
            if self.closed:
                raise Overloaded("the request has ended")
            if n > 0:
                self.budget._take(n, what)
                self.held += n

    def shrink(self, n: int) -> None:
        """Give ``n`` bytes back (never more than held)."""
        with self._lock:
            n = min(n, self.held)
            if n > 0:
                self.budget._give(n)
                self.held -= n

    def close(self) -> None:
        """Give everything back; later :meth:`grow` calls fail."""
        with self._lock:
            self.closed = True
        self.shrink(self.held)

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_libc: ctypes.CDLL | None = None


def return_freed_memory() -> bool:
    """Let the server hand free heap memory back to the OS when its budget drains (Linux/glibc).

    After a burst, freed upload and pixel buffers stay in glibc's heaps (one per worker
    thread), so the process keeps its peak size. Once this is called, :class:`MemoryBudget`
    calls :func:`trim` when its reservations drop to zero (at most once a second). Measured
    on 16 concurrent 3000 x 3000 PNGs: 9 MB above idle 5 s later. glibc's mmap threshold is
    left alone: pinning it low halves the peak but made a full-size NPR forward pass about
    1.5x slower (docs/serving.md). Returns whether ``malloc_trim`` is available.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.malloc_trim  # noqa: B018 (musl has none: AttributeError)
            _libc = lib
        return True
    except (OSError, AttributeError):
        return False


def trim() -> None:
    """Give the free pages of every glibc heap back to the OS now (``malloc_trim``; no-op elsewhere)."""
    if _libc is not None:
        try:
            _libc.malloc_trim(0)
        except AttributeError:
            pass
