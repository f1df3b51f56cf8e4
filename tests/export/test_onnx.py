"""ONNX export: every registered detector exports and matches PyTorch under onnxruntime."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import aigi  # noqa: E402
from aigi.detectors import detector_class, list_detectors  # noqa: E402
from aigi.detectors.base import CheckpointError, Detector, DetectorConfig  # noqa: E402
from aigi.export import ExportError, OnnxDetector, export_onnx, load_onnx_detector  # noqa: E402
from aigi.export import onnx as onnx_mod  # noqa: E402

NAMES = sorted(list_detectors())


def tiny(name: str, **overrides):
    return aigi.create_detector(name, **{**detector_class(name).tiny_overrides, **overrides})


def pixels(model, n: int = 2, seed: int = 5) -> torch.Tensor:
    s = model.config.preprocess.size
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_every_detector_exports_and_matches(name, tmp_path):
    model = tiny(name).eval()
    x = pixels(model)
    with torch.no_grad():
        before = model(x)
    res = export_onnx(model, tmp_path / f"{name}.onnx")
    assert res.path.is_file() and res.sidecar == tmp_path / f"{name}.json" and res.sidecar.is_file()
    assert res.max_abs_logit_diff <= 1e-4
    onnx_model = load_onnx_detector(res.path)
    got = onnx_model(x)
    with torch.no_grad():
        folded = model.for_inference()(x)
    torch.testing.assert_close(got, folded, atol=1e-4, rtol=1e-4)
    assert (torch.sigmoid(got) - torch.sigmoid(folded)).abs().max() <= 1e-4
    # the detector the export started from is untouched (the export works on a plain copy)
    torch.testing.assert_close(folded, before, atol=1e-5, rtol=1e-5)
    # the metadata a consumer needs, in the file and beside it
    assert onnx_model.method == name
    assert onnx_model.preprocess_config() == model.preprocess_config()
    assert onnx_model.config.threshold == model.config.threshold
    assert tuple(onnx_model.config.labels) == tuple(model.config.labels)
    side = json.loads(res.sidecar.read_text())
    assert side["method"] == name and side["preprocess"] == model.preprocess_config().model_dump(mode="json")
    assert side["onnx"]["dynamic_axes"][0] == "batch"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files were left behind"


def test_dynamic_batch_and_float16(tmp_path):
    model = tiny("effort", threshold=0.3)
    res = export_onnx(model, tmp_path / "e16.onnx", dtype="float16")
    assert res.dtype == "float16" and res.tolerance == (1e-2, 1e-2)
    det = load_onnx_detector(res.path)
    assert det.metadata["dtype"] == "float16" and det.config.threshold == 0.3
    with torch.no_grad():
        ref = model.for_inference()
        for n in (1, 5):
            x = pixels(model, n, seed=n)
            out = det(x)
            assert out.shape == (n,) and out.dtype == torch.float32
            assert ((out - ref(x)).abs() <= 1e-2 + 1e-2 * ref(x).abs()).all()


def test_size_preserving_preprocessing_gets_dynamic_height_and_width(tmp_path):
    model = tiny("npr", **{"preprocess.test": "none"}).eval()
    res = export_onnx(model, tmp_path / "npr.onnx")
    det = load_onnx_detector(res.path)
    assert json.loads(res.sidecar.read_text())["onnx"]["dynamic_axes"] == ["batch", "height", "width"]
    for shape in ((1, 3, 40, 56), (2, 3, 64, 32)):
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(det(x), model(x), atol=1e-4, rtol=1e-4)


class _Cheat(Detector):
    """Computes something else while torch.export traces it: the check must catch that."""

    def __init__(self) -> None:
        super().__init__(DetectorConfig(preprocess={"size": 16}))
        self.fc = torch.nn.Linear(3, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.fc(pixels.mean(dim=(2, 3))).squeeze(-1)
        return out + 1.0 if torch.compiler.is_exporting() else out


def test_a_file_that_does_not_match_is_never_written(tmp_path):
    target = tmp_path / "cheat.onnx"
    with pytest.raises(ExportError, match="does not match PyTorch.*nothing was written"):
        export_onnx(_Cheat(), target)
    assert list(tmp_path.iterdir()) == []


def test_large_models_keep_their_weights_beside_the_graph(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_mod, "EXTERNAL_DATA_BYTES", 0)
    model = tiny("univfd").eval()
    res = export_onnx(model, tmp_path / "u.onnx")
    assert res.external_data == tmp_path / "u.onnx.data" and res.external_data.is_file()
    assert res.size_bytes == res.path.stat().st_size + res.external_data.stat().st_size
    x = pixels(model)
    with torch.no_grad():
        torch.testing.assert_close(load_onnx_detector(res.path)(x), model(x), atol=1e-4, rtol=1e-4)


def test_onnx_detector_behaves_as_a_detector_for_the_engine(tmp_path):
    model = tiny("cnnspot")
    det = load_onnx_detector(export_onnx(model, tmp_path / "c.onnx").path)
    assert isinstance(det, Detector) and isinstance(det, OnnxDetector)
    assert det.for_inference() is det and det.to("cpu") is det and det.eval() is det
    assert det.trainable_parameters() == []
    x = pixels(model, 3)
    assert det.predict_proba(x).shape == (3,)
    with pytest.raises(TypeError, match="cannot be trained"):
        det.training_loss({"pixels": x, "label": torch.zeros(3)})
    with pytest.raises(TypeError, match="not a detector folder"):
        det.save_pretrained(tmp_path / "x")


def test_loading_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="not an ONNX file"):
        load_onnx_detector(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_onnx_detector(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf at all" * 10)
    with pytest.raises(CheckpointError, match="junk.onnx"):
        load_onnx_detector(tmp_path / "junk.onnx")
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(4, 1).eval(), (torch.randn(2, 4),), str(plain), dynamo=True, verbose=False)
    with pytest.raises(CheckpointError, match="no aigi metadata.*aigi export"):
        load_onnx_detector(plain)


def test_bad_arguments_are_refused(tmp_path):
    model = tiny("npr")
    with pytest.raises(ExportError, match="dtype must be one of float32, float16"):
        export_onnx(model, tmp_path / "a.onnx", dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "a.pt")
    with pytest.raises(ExportError, match="give an output file"):
        export_onnx(model)


def test_folder_export_defaults_and_calibration_metadata(tmp_path):
    folder = tmp_path / "npr"
    tiny("npr").save_pretrained(folder)
    (folder / "calibration.json").write_text(json.dumps({"threshold": 0.42, "target_fpr": 0.05}))
    res = export_onnx(folder)
    assert res.path == folder / "model.onnx"
    det = load_onnx_detector(res.path)
    assert det.metadata["calibration"]["threshold"] == 0.42
