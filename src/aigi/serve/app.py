"""The detection server: a FastAPI app over one detector, with a web page at ``/``.

Endpoints (errors are always ``{"error": code, "message": text}``):

* ``POST /v1/detect``   multipart field ``files`` (one or many images) → per image P(fake),
  verdict, threshold and time; an undecodable file gets its own error, the others are scored;
* ``POST /v1/heatmap``  one image in ``files`` → a grid of patch-level P(fake) over
  model-input-sized crops (see :mod:`aigi.serve.heatmap`);
* ``GET /v1/model``     the model card, plus the folder's ``training.json``,
  ``eval/metrics.json``, ``calibration.json`` and ``conversion.json`` when present;
* ``GET /healthz``      liveness and batching counters (never needs the token);
* ``GET /``             the web page; ``GET /docs`` a self-contained API page over
  ``GET /openapi.json`` (FastAPI's own /docs and /redoc load JavaScript from a CDN and are
  disabled: this server never makes the browser fetch anything from elsewhere).

Every image walks the detector's own path: ``decode_image`` on the uploaded bytes (format by
content, pixel limit checked before decoding) → ``build_transform(preprocess_config(),
train=False)`` → the dynamic batcher → the shared :class:`aigi.inference.Predictor`
(the same folding, device, dtype and float64 sigmoid as ``eval``/``detect``; a non-finite
score is that image's error, never a verdict). With an abstain band (``calibration.json``
or ``band_width``) a verdict may be ``uncertain``. Uploads are held in memory only
(:mod:`aigi.serve.uploads`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, AsyncIterator

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.io import ImageDecodeError, decode_image
from ..detectors.base import Detector
from ..detectors.folder import open_model, side_files
from ..inference.predictor import NON_FINITE, Predictor
from .batching import DynamicBatcher, Overloaded
from .errors import ApiError
from .heatmap import crop_boxes, crops
from .memory import MemoryBudget, Reservation, pixel_cost, return_freed_memory
from .settings import ServeSettings
from .uploads import Upload, read_uploads

#: Content-Security-Policy of the HTML pages: inline code only, requests to this server only.
PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_SIDE_FILES = side_files()


# -- response models (they also document the API in /openapi.json) -----------------------
class ImageError(BaseModel):
    reason: str = Field(description="empty, not_an_image, truncated, too_large, unreadable, preprocess_failed "
                                    "or non_finite_score")
    message: str


class ImageResult(BaseModel):
    index: int = Field(description="position of the file in the request")
    filename: str
    ok: bool
    p_fake: float | None = Field(None, description="P(fake) = sigmoid(logit), in float64, not rounded")
    verdict: str | None = Field(None, description="label 1 (fake) when p_fake >= threshold (or the band's high "
                                "edge), label 0 below it (or below the band's low edge), else 'uncertain'")
    threshold: float
    time_ms: float = Field(description="from the start of decoding this image to its score")
    width: int | None = None
    height: int | None = None
    error: ImageError | None = None


class Band(BaseModel):
    low: float = Field(description="below this P(fake): label 0")
    high: float = Field(description="at or above this P(fake): label 1; between the two: 'uncertain'")


class DetectResponse(BaseModel):
    method: str
    threshold: float
    threshold_source: str
    band: Band | None = Field(None, description="the abstain band, when the server has one")
    results: list[ImageResult]
    time_ms: float


class HeatmapResponse(BaseModel):
    filename: str
    width: int
    height: int
    crop: int = Field(description="side of each crop, the model's input size")
    rows: int
    cols: int
    boxes: list[list[int]] = Field(description="crop boxes [left, top, right, bottom], row-major")
    scores: list[list[float | None]] = Field(description="P(fake) of each crop, rows x cols (null: non-finite)")
    p_fake: float = Field(description="P(fake) of the whole image")
    verdict: str
    threshold: float
    time_ms: float


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            }
        },
    }
}
_ERRORS = {
    code: {"description": text, "content": {"application/json": {"example": {"error": name, "message": "..."}}}}
    for code, name, text in [
        (401, "unauthorized", "missing or wrong bearer token"),
        (413, "payload_too_large", "a file, the file count or the body is over its limit"),
        (415, "unsupported_media_type", "the body is not multipart/form-data"),
        (422, "unprocessable", "no file, or a file in another field"),
        (503, "overloaded", "too much pending work; see Retry-After"),
        (504, "timeout", "the request took longer than request_timeout_s"),
    ]
}


@dataclass
class _Prepared:
    index: int
    filename: str
    t0: float
    t1: float | None = None  # when a failed image gave up
    tensor: torch.Tensor | None = None
    width: int | None = None
    height: int | None = None
    error: ImageError | None = None


class ServeState:
    """The loaded model with everything a request needs."""

    def __init__(self, model: str | os.PathLike | Detector, settings: ServeSettings,
                 revision: str | None = None) -> None:
        self.settings = settings
        if isinstance(model, Detector):
            detector, self.model_dir = model, None
        else:
            opened = open_model(model, revision)
            detector, self.model_dir = opened.detector, opened.folder
        base_card = detector.model_card()  # before folding: parameter counts as trained
        self.predictor = Predictor(detector, folder=self.model_dir, device=settings.device,
                                   dtype=settings.dtype, calibrated=settings.calibrated,
                                   band_width=settings.band_width)
        self.detector = self.predictor.detector
        self.threshold, self.threshold_source = self.predictor.threshold, self.predictor.threshold_source
        self.band = self.predictor.band
        self.labels = self.predictor.labels
        self.preprocess = self.predictor.preprocess
        self.transform = self.predictor.transform
        self.input_size = int(self.preprocess.size)

        self.batcher = DynamicBatcher(
            self.predictor.probabilities,
            max_batch=settings.max_batch,
            max_wait_s=settings.batch_wait_ms / 1000.0,
            max_pending=settings.max_pending,
            threads=settings.threads,
        )
        self.card = self._card(base_card)

    def verdict(self, p: float) -> str:
        return self.predictor.verdict(p)

    def _card(self, card: dict[str, Any]) -> dict[str, Any]:
        card = dict(card)
        card.update(
            threshold=self.threshold,
            threshold_source=self.threshold_source,
            band=None if self.band is None else {"low": self.band.low, "high": self.band.high},
            device=str(self.predictor.device),
            dtype=self.predictor.dtype,
            labels=list(self.labels),
            input_size=self.input_size,
            preprocessing=self.preprocess.model_dump(mode="json"),
            backbone=card["config"].get("backbone"),
            limits=self.settings.public(),
        )
        for key, rel in _SIDE_FILES.items():
            card[key] = None
            if self.model_dir is not None and (self.model_dir / rel).is_file():
                try:
                    card[key] = json.loads((self.model_dir / rel).read_text())
                except (OSError, json.JSONDecodeError) as err:
                    card[key] = {"unreadable": f"{rel}: {err}"}
        return card

    # -- per-image work, run in a thread ---------------------------------------------
    def _admit_pixels(self, upload: Upload, held: Reservation | None) -> int:
        """Reserve the decode's memory from the header's size (Overloaded when it does not fit)."""
        if held is None:
            return 0
        cost = pixel_cost(upload.data, self.settings.max_pixels)
        held.grow(cost, f"decoding {upload.filename}")
        return cost

    @staticmethod
    def _release(upload: Upload, held: Reservation | None, cost: int) -> None:
        """Give back the decode's reservation and the upload's bytes (the buffer is dropped)."""
        if held is not None:
            held.shrink(cost + len(upload.data))
        upload.data = b""

    def prepare(self, index: int, upload: Upload, held: Reservation | None = None) -> _Prepared:
        """Decode and preprocess one upload; a failure becomes the image's error.

        With ``held`` (the request's memory reservation), the decode is paid for first and
        the upload's bytes are given back once it is preprocessed.
        """
        item = _Prepared(index=index, filename=upload.filename, t0=time.perf_counter())
        cost = self._admit_pixels(upload, held)
        try:
            try:
                img = decode_image(upload.data, max_pixels=self.settings.max_pixels, name=upload.filename)
            except ImageDecodeError as err:
                item.error = ImageError(reason=err.reason, message=str(err))
                item.t1 = time.perf_counter()
                return item
            item.width, item.height = img.size
            try:
                item.tensor = self.transform(img)
            except (ValueError, RuntimeError) as err:
                item.error = ImageError(reason="preprocess_failed",
                                        message=f"cannot preprocess {upload.filename}: {err}")
                item.t1 = time.perf_counter()
            del img
            return item
        finally:
            self._release(upload, held, cost)

    def prepare_heatmap(self, upload: Upload,
                        held: Reservation | None = None) -> tuple[dict[str, Any], list[torch.Tensor]]:
        cost = self._admit_pixels(upload, held)
        try:
            img = decode_image(upload.data, max_pixels=self.settings.max_pixels, name=upload.filename)
            rows, cols, boxes = crop_boxes(*img.size, self.input_size, self.settings.heatmap_cells)
            tensors = [self.transform(img)] + [self.transform(c) for c in crops(img, boxes)]
            info = {"filename": upload.filename, "width": img.size[0], "height": img.size[1],
                    "crop": self.input_size, "rows": rows, "cols": cols, "boxes": [list(b) for b in boxes]}
            return info, tensors
        finally:
            self._release(upload, held, cost)


def create_app(model: str | os.PathLike | Detector, settings: ServeSettings | None = None,
               revision: str | None = None) -> FastAPI:
    """A FastAPI app serving ``model`` (a detector folder, zoo:NAME, FILE.onnx, a Hub id, or a loaded detector)."""
    settings = settings or ServeSettings()
    state = ServeState(model, settings, revision)
    memory = state.memory = MemoryBudget(settings.memory_budget_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        return_freed_memory()  # freed upload and pixel buffers go back to the OS at once
        await state.batcher.start()
        try:
            yield
        finally:
            await state.batcher.stop()

    app = FastAPI(
        title="aigi detector",
        summary="Is this image AI-generated? P(fake) per image from one loaded detector.",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.aigi = state

    # -- errors ----------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {err.detail}"
        if err.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see /docs)"
        return JSONResponse({"error": code, "message": message}, status_code=err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return JSONResponse({"error": "unprocessable", "message": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"error": "internal", "message": f"internal error: {type(err).__name__}: {err}"},
                            status_code=500)

    # -- auth ------------------------------------------------------------------------
    async def require_token(request: Request) -> None:
        expected = settings.token
        if expected is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "unauthorized",
                           "this server needs a bearer token: send the header 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": 'Bearer realm="aigi"'})
        if not secrets.compare_digest(given.strip().encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "the bearer token is not valid",
                           {"WWW-Authenticate": 'Bearer realm="aigi", error="invalid_token"'})

    auth = [Depends(require_token)]

    # -- pages -----------------------------------------------------------------------
    page_headers = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                    "Cache-Control": "no-store"}

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers=page_headers)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_static("docs.html"), headers=page_headers)

    # -- API -------------------------------------------------------------------------
    @app.get("/healthz", summary="Liveness and batching counters")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "method": state.detector.method, "pending": state.batcher.pending,
                "model_threads": state.batcher.threads, "batching": state.batcher.stats.as_dict(),
                "memory": memory.as_dict()}

    @app.get("/v1/model", dependencies=auth, summary="The model card", responses={401: _ERRORS[401]})
    async def model_card() -> dict[str, Any]:
        return state.card

    async def _with_timeout(coro):
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                return await coro
        except TimeoutError:
            raise ApiError(504, "timeout",
                           f"the request took longer than {settings.request_timeout_s:g} s (request_timeout_s); "
                           "send fewer or smaller images, or retry when the server is less busy") from None
        except Overloaded as err:
            raise ApiError(503, "overloaded", f"{err}; retry after {settings.retry_after_s} s",
                           {"Retry-After": str(settings.retry_after_s)}) from None

    @app.post("/v1/detect", dependencies=auth, response_model=DetectResponse, openapi_extra=_UPLOAD_BODY,
              summary="Score one or many images", responses=_ERRORS)
    async def detect(request: Request) -> DetectResponse:
        return await _with_timeout(_detect(request))

    async def _detect(request: Request) -> DetectResponse:
        t_req = time.perf_counter()
        with memory.reservation() as held:  # bytes, then pixels, paid before use; all given back
            uploads = await read_uploads(request, max_files=settings.max_images, max_file_bytes=settings.max_upload_bytes,
                                         max_body_bytes=settings.max_body_bytes, reservation=held)
            with state.batcher.admit(len(uploads)) as ticket:
                prepared = await run_in_threadpool(lambda: [state.prepare(i, u, held) for i, u in enumerate(uploads)])
                del uploads
                ready = [p for p in prepared if p.tensor is not None]
                probs = await state.batcher.submit(ticket, [p.tensor for p in ready]) if ready else []
        t_done = time.perf_counter()
        scores = {}
        for p, prob in zip(ready, probs):
            if math.isfinite(prob):
                scores[p.index] = prob
            else:
                p.error = ImageError(reason="non_finite_score",
                                     message=f"{NON_FINITE} for {p.filename}: the model returned NaN or infinity")
        results = []
        for p in prepared:
            ok = p.index in scores
            results.append(ImageResult(
                index=p.index, filename=p.filename, ok=ok,
                p_fake=scores[p.index] if ok else None,
                verdict=state.verdict(scores[p.index]) if ok else None,
                threshold=state.threshold, time_ms=round(1000 * ((p.t1 or t_done) - p.t0), 3),
                width=p.width, height=p.height, error=p.error,
            ))
        band = None if state.band is None else Band(low=state.band.low, high=state.band.high)
        return DetectResponse(method=state.predictor.method, threshold=state.threshold,
                              threshold_source=state.threshold_source, band=band, results=results,
                              time_ms=round(1000 * (t_done - t_req), 3))

    @app.post("/v1/heatmap", dependencies=auth, response_model=HeatmapResponse, openapi_extra=_UPLOAD_BODY,
              summary="Patch-level P(fake) over a grid of model-input-sized crops of one image", responses=_ERRORS)
    async def heatmap(request: Request) -> HeatmapResponse:
        return await _with_timeout(_heatmap(request))

    async def _heatmap(request: Request) -> HeatmapResponse:
        t0 = time.perf_counter()
        with memory.reservation() as held:
            uploads = await read_uploads(request, max_files=1, max_file_bytes=settings.max_upload_bytes,
                                         max_body_bytes=settings.max_upload_bytes + 64 * 1024, reservation=held)
            try:
                info, tensors = await run_in_threadpool(state.prepare_heatmap, uploads[0], held)
            except ImageDecodeError as err:
                raise ApiError(422, "unprocessable", str(err)) from None
            del uploads
        with state.batcher.admit(len(tensors)) as ticket:
            probs = await state.batcher.submit(ticket, tensors)
        whole, cells = probs[0], probs[1:]
        if not math.isfinite(whole):
            raise ApiError(422, "unprocessable", f"{NON_FINITE} for {info['filename']}: the model returned NaN "
                           "or infinity for the whole image")
        cols = info["cols"]
        grid = [[p if math.isfinite(p) else None for p in cells[r * cols:(r + 1) * cols]] for r in range(info["rows"])]
        return HeatmapResponse(**info, scores=grid, p_fake=whole, verdict=state.verdict(whole),
                               threshold=state.threshold, time_ms=round(1000 * (time.perf_counter() - t0), 3))

    return app


def _static(name: str) -> str:
    return resources.files("aigi.serve").joinpath("static", name).read_text(encoding="utf-8")


def _version() -> str:
    from .. import __version__

    return __version__
