"""The dynamic batcher and the heat-map grid, without HTTP."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from aigi.serve.batching import DynamicBatcher, Overloaded
from aigi.serve.heatmap import crop_boxes, grid_shape


def _recording_predict(sizes: list[int], delay: float = 0.0):
    def predict(x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled() and torch.is_inference_mode_enabled()
        assert threading.current_thread().name.startswith("aigi-model")  # off the event loop
        sizes.append(x.shape[0])
        time.sleep(delay)
        return x.mean(dim=(1, 2, 3))  # a score that identifies the input

    return predict


def test_concurrent_submissions_are_batched_and_routed_back():
    sizes: list[int] = []
    batcher = DynamicBatcher(_recording_predict(sizes, 0.02), max_batch=4, max_wait_s=0.05, max_pending=64)

    async def one(value: float) -> float:
        with batcher.admit(1) as ticket:
            await asyncio.sleep(0)
            (p,) = await batcher.submit(ticket, [torch.full((3, 2, 2), value)])
            return p

    async def scenario():
        await batcher.start()
        try:
            return await asyncio.gather(*[one(float(i)) for i in range(10)])
        finally:
            await batcher.stop()

    out = asyncio.run(scenario())
    assert out == [float(i) for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) < 10
    assert batcher.stats.images == 10 and batcher.stats.largest_batch == 4 and batcher.pending == 0


def test_a_lone_request_does_not_wait_for_the_budget():
    sizes: list[int] = []
    batcher = DynamicBatcher(_recording_predict(sizes), max_batch=8, max_wait_s=5.0, max_pending=8)

    async def scenario():
        await batcher.start()
        try:
            t0 = time.perf_counter()
            with batcher.admit(2) as ticket:
                out = await batcher.submit(ticket, [torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
            return out, time.perf_counter() - t0
        finally:
            await batcher.stop()

    out, seconds = asyncio.run(scenario())
    assert out == [0.0, 1.0] and sizes == [2]
    assert seconds < 1.0  # nobody else was admitted, so the 5 s budget was not spent


def test_different_shapes_run_as_separate_stacks():
    sizes: list[int] = []
    batcher = DynamicBatcher(_recording_predict(sizes), max_batch=8, max_wait_s=0.01, max_pending=8)

    async def scenario():
        await batcher.start()
        try:
            with batcher.admit(3) as ticket:
                return await batcher.submit(ticket, [torch.zeros(3, 2, 2), torch.ones(3, 4, 4), torch.ones(3, 2, 2)])
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [0.0, 1.0, 1.0]
    assert sorted(sizes) == [1, 2]


def test_admission_is_bounded_and_released():
    batcher = DynamicBatcher(lambda x: x, max_batch=2, max_wait_s=0.0, max_pending=3)
    with batcher.admit(2):
        assert batcher.pending == 2
        with pytest.raises(Overloaded, match="max_pending=3"):
            with batcher.admit(2):
                pass
        with batcher.admit(1):
            assert batcher.pending == 3
    assert batcher.pending == 0 and batcher.stats.rejected == 1
    with pytest.raises(Overloaded, match="more than this server ever holds"):
        with batcher.admit(4):
            pass


def test_a_failing_model_fails_only_its_batch():
    def predict(x):
        if (x < 0).any():
            raise RuntimeError("model exploded")
        return x.mean(dim=(1, 2, 3))

    batcher = DynamicBatcher(predict, max_batch=1, max_wait_s=0.0, max_pending=4)

    async def scenario():
        await batcher.start()
        try:
            with batcher.admit(1) as t:
                with pytest.raises(RuntimeError, match="exploded"):
                    await batcher.submit(t, [-torch.ones(3, 2, 2)])
            with batcher.admit(1) as t:
                return await batcher.submit(t, [torch.ones(3, 2, 2)])
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == [1.0]


@pytest.mark.parametrize(
    "w,h,size,max_cells,expected",
    [(100, 70, 32, 64, (3, 4)), (20, 20, 32, 64, (1, 1)), (224, 224, 224, 64, (1, 1)),
     (4000, 3000, 224, 64, (7, 9)), (4000, 100, 32, 16, (1, 16))],
)
def test_grid_shape(w, h, size, max_cells, expected):
    rows, cols = grid_shape(w, h, size, max_cells)
    assert (rows, cols) == expected and rows * cols <= max_cells


def test_crop_boxes_cover_the_image_edge_to_edge():
    rows, cols, boxes = crop_boxes(100, 70, 32, 64)
    assert (rows, cols, len(boxes)) == (3, 4, 12)
    assert all(r - l == 32 and b - t == 32 for l, t, r, b in boxes)
    assert {l for l, _, _, _ in boxes} == {0, 23, 45, 68} and {t for _, t, _, _ in boxes} == {0, 19, 38}
    rows, cols, boxes = crop_boxes(300, 20, 32, 2)  # capped: two crops, centred vertically span all 20 rows
    assert (rows, cols) == (1, 2) and boxes == [(0, 0, 32, 20), (268, 0, 300, 20)]
