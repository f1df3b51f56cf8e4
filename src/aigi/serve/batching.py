"""Dynamic batching: concurrent requests share one forward pass.

Requests first *admit* the images they will submit (a bounded count of pending work;
beyond ``max_pending`` admission fails with :class:`Overloaded`, which the API turns into
503 + Retry-After). They then submit preprocessed tensors and await one future per image.

A single background task collects queued images into a batch: it takes what is queued,
and while fewer than ``max_batch`` are collected *and* admitted images are still on their
way (being decoded by other requests) it waits for them, at most ``max_wait_s`` after the
first one. A lone request therefore never waits, and under load batches fill up, so
throughput grows with concurrency. Tensors of equal shape are stacked and run through
``predict`` in one dedicated worker thread (the event loop is never blocked); futures of
requests that gave up (timeout, disconnect) are skipped before the forward pass.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch


def default_model_threads() -> int:
    """Half the CPU cores (at least 1, at most torch's own setting)."""
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) // 2))


class Overloaded(RuntimeError):
    """More images were admitted than ``max_pending`` allows; retry later."""


@dataclass
class _Item:
    tensor: torch.Tensor
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters since start: forward passes, images scored, the largest batch, rejections."""

    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    rejected: int = 0
    forward_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "batches": self.batches,
            "images": self.images,
            "mean_batch": round(self.images / self.batches, 3) if self.batches else 0.0,
            "largest_batch": self.largest_batch,
            "rejected": self.rejected,
            "forward_seconds": round(self.forward_seconds, 4),
        }


class DynamicBatcher:
    """Batch concurrent single-image submissions into calls of ``predict(stacked) -> probs``."""

    def __init__(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.01,
        max_pending: int = 256,
        threads: int | None = None,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_pending must be >= 1 and max_wait_s >= 0")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending = max_pending
        self.stats = BatchStats()
        self._admitted = 0  # images admitted and not released (bounded by max_pending)
        self._incoming = 0  # admitted images not yet taken into a batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Start the batching task on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        # torch's intra-op thread count is set *in* the model thread (OpenMP keeps it per
        # thread). Default: half the cores, leaving the rest to decoding and HTTP; an OpenMP
        # team as wide as the machine stalls at every barrier once other threads compete for
        # the cores (measured on a busy 2-core machine: tiny NPR 130-300 ms per forward pass
        # with 2 threads, 0.8 ms with 1).
        threads = self.threads = self.threads or default_model_threads()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aigi-model",
                                            initializer=torch.set_num_threads, initargs=(threads,))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aigi-batcher")

    async def stop(self) -> None:
        """Stop the task; queued images fail with ``RuntimeError``."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        assert self._queue is not None and self._executor is not None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)
        self._task = None

    @property
    def pending(self) -> int:
        """Images admitted and not yet answered."""
        return self._admitted

    # -- admission -------------------------------------------------------------------
    @contextmanager
    def admit(self, n: int) -> Iterator["_Ticket"]:
        """Reserve room for ``n`` images for the duration of the block, or raise :class:`Overloaded`."""
        if n > self.max_pending:
            self.stats.rejected += 1
            raise Overloaded(f"{n} images are more than this server ever holds (max_pending={self.max_pending})")
        if self._admitted + n > self.max_pending:
            self.stats.rejected += 1
            raise Overloaded(
                f"server busy: {self._admitted} images pending, {n} more would exceed max_pending={self.max_pending}"
            )
        self._admitted += n
        self._incoming += n
        ticket = _Ticket(self, n)
        try:
            yield ticket
        finally:
            self._admitted -= n
            self._incoming -= ticket.unsubmitted

    async def submit(self, ticket: "_Ticket", tensors: Sequence[torch.Tensor]) -> list[float]:
        """P(fake) for each tensor (3, H, W), in order; counts against ``ticket``'s admission."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running; call start() first")
        if len(tensors) > ticket.unsubmitted:
            raise ValueError(f"{len(tensors)} tensors submitted but only {ticket.unsubmitted} admitted")
        loop = asyncio.get_running_loop()
        futures = []
        for t in tensors:
            fut = loop.create_future()
            self._queue.put_nowait(_Item(t, fut))
            futures.append(fut)
        ticket.unsubmitted -= len(tensors)
        # Unused admissions no longer need to be waited for by the batching task.
        ticket.release_unused()
        return list(await asyncio.gather(*futures))

    # -- the batching task -----------------------------------------------------------
    async def _collect(self) -> list[_Item]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = await self._queue.get()
        self._incoming -= 1
        batch = [first]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                self._incoming -= 1
                continue
            remaining = deadline - loop.time()
            if self._incoming <= 0 or remaining <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            batch.append(item)
            self._incoming -= 1
        return [it for it in batch if not it.future.done()]

    def _forward(self, pixels: torch.Tensor) -> tuple[list[float], float]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            probs = self.predict(pixels)
        return probs.double().reshape(-1).tolist(), time.perf_counter() - t0  # float64: P(fake) as computed

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            groups: dict[tuple[int, ...], list[_Item]] = defaultdict(list)
            for it in batch:
                groups[tuple(it.tensor.shape)].append(it)
            for items in groups.values():
                try:
                    stacked = torch.stack([it.tensor for it in items])
                    probs, seconds = await loop.run_in_executor(self._executor, self._forward, stacked)
                except asyncio.CancelledError:
                    for it in items:
                        if not it.future.done():
                            it.future.set_exception(RuntimeError("the server is shutting down"))
                    raise
                except Exception as err:  # a model failure fails this batch's requests only
                    for it in items:
                        if not it.future.done():
                            it.future.set_exception(err)
                    continue
                self.stats.batches += 1
                self.stats.images += len(items)
                self.stats.largest_batch = max(self.stats.largest_batch, len(items))
                self.stats.forward_seconds += seconds
                for it, p in zip(items, probs):
                    if not it.future.done():
                        it.future.set_result(p)


class _Ticket:
    """An admission: how many of its images are still to be submitted."""

    def __init__(self, batcher: DynamicBatcher, n: int) -> None:
        self.batcher = batcher
        self.n = n
        self.unsubmitted = n

    def release_unused(self) -> None:
        """Declare that no more images will be submitted under this ticket."""
        self.batcher._incoming -= self.unsubmitted
        self.unsubmitted = 0
