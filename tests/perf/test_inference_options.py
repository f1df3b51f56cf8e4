"""Inference options keep the logits; sharded scoring covers every image once, in order."""

from __future__ import annotations

import pytest
import torch

import aigi
from aigi.data.layouts import load_samples
from aigi.detectors import detector_class
from aigi.evaluate.runner import score_samples
from aigi.inference.fast import inference_forward, is_convolutional
from aigi.inference.predictor import ShardBatchSampler


def tiny(name: str):
    return aigi.create_detector(name, **detector_class(name).tiny_overrides).eval()


def pixels_for(model, n: int = 3) -> torch.Tensor:
    s = model.config.preprocess.size
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(3))


def test_convolutional_networks_are_recognised():
    assert is_convolutional(tiny("cnnspot"))
    assert is_convolutional(tiny("npr"))
    # a ViT's only convolution is its patch embedding (kernel == stride): not a CNN
    assert not is_convolutional(tiny("univfd"))


@pytest.mark.parametrize("name", ["cnnspot", "npr"])
def test_channels_last_keeps_logits(name):
    model = tiny(name)
    x = pixels_for(model)
    with torch.inference_mode():
        ref = model(x)
        out = inference_forward(model, channels_last=True)(x)
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert linear.weight.is_contiguous()  # 2-D weights are untouched
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_bfloat16_autocast_is_close_and_returns_float32():
    model = tiny("univfd")
    x = pixels_for(model)
    with torch.inference_mode():
        ref = model(x)
        out = inference_forward(model, dtype="bfloat16")(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # bfloat16 keeps 8 mantissa bits: logits agree to about 1e-2 relative
    torch.testing.assert_close(out, ref, rtol=3e-2, atol=3e-2)
    assert not torch.equal(out, ref)  # the autocast path really ran in bfloat16


def test_compiled_forward_keeps_logits():
    # the "eager" backend traces the model with TorchDynamo without generating C++ code
    # (inductor takes over a minute on a 2-core CPU); the wiring and the graph capture
    # are what is checked here, the speed is measured by benchmarks/run.py
    torch._dynamo.reset()
    model = tiny("npr")
    x = pixels_for(model, 2)
    with torch.inference_mode():
        ref = model(x)
        out = inference_forward(model, compile="eager", channels_last=False)(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_bad_dtype_and_threads_are_clear(image_tree):
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        inference_forward(tiny("npr"), dtype="int8")
    samples = load_samples(image_tree, "auto")
    with pytest.raises(ValueError, match="threads must be a positive number"):
        score_samples(tiny("npr"), samples, threads=0)


def test_options_and_workers_keep_scores_and_restore_threads(image_tree):
    model = tiny("cnnspot")
    samples = load_samples(image_tree, "auto")
    ref = score_samples(model, samples, batch_size=8, channels_last=False)
    before = torch.get_num_threads()
    fast = score_samples(model, samples, batch_size=8, num_workers=2, prefetch_factor=4, threads=1,
                         channels_last=True)
    assert torch.get_num_threads() == before
    assert [s.path for s in fast.samples] == [s.path for s in ref.samples]
    assert fast.indices == list(range(len(samples)))
    torch.testing.assert_close(torch.tensor(fast.scores), torch.tensor(ref.scores), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,batch,world", [(32, 4, 2), (33, 4, 2), (10, 4, 3), (3, 4, 2), (0, 4, 2)])
def test_shards_are_the_single_process_batches(n, batch, world):
    one = list(ShardBatchSampler(n, batch))
    assert one == [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]
    shards = [list(ShardBatchSampler(n, batch, r, world)) for r in range(world)]
    assert [len(s) for s in shards] == [len(ShardBatchSampler(n, batch, r, world)) for r in range(world)]
    # round-robin over the same global batches: every batch once, same composition
    assert sorted(b for s in shards for b in s) == one
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_bad_shard_is_rejected():
    with pytest.raises(ValueError, match="bad shard"):
        ShardBatchSampler(10, 4, rank=2, world=2)


def test_sharded_scoring_reassembles_to_one_process(image_tree):
    model = tiny("univfd")
    samples = load_samples(image_tree, "auto")
    ref = score_samples(model, samples, batch_size=4)
    parts = [score_samples(model, samples, batch_size=4, shard=(r, 3)) for r in range(3)]
    rows = sorted((i, p) for part in parts for i, p in zip(part.indices, part.scores))
    assert [i for i, _ in rows] == ref.indices == list(range(len(samples)))
    assert [p for _, p in rows] == ref.scores  # the same batches, so bit-identical
