"""Limits and options of the detection server, as one validated pydantic model.

Every field can be set three ways, later ones winning: its default here, an environment
variable ``AIGI_SERVE_<FIELD>`` (e.g. ``AIGI_SERVE_MAX_IMAGES=8``, ``AIGI_SERVE_TOKEN=...``),
and an explicit value (a ``aigi serve`` option or a keyword of :meth:`ServeSettings.from_env`).
"""

from __future__ import annotations

import os
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..data.io import DECODE_BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS

ENV_PREFIX = "AIGI_SERVE_"
MiB = 1024 * 1024


class ServeSettings(BaseModel):
    """What the server accepts and how hard it works; every limit has a sane default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="interface to listen on (loopback by default)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one)")
    token: str | None = Field(
        None, description="bearer token required on /v1/* (None: no authentication)", repr=False
    )
    max_upload_bytes: int = Field(20 * MiB, gt=0, description="largest accepted file, in bytes")
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, gt=0,
        description="largest accepted image, width x height (checked before decoding; the same limit as "
                    "detect, eval and training by default)",
    )
    max_images: int = Field(16, gt=0, description="most files in one /v1/detect request")
    max_batch: int = Field(32, gt=0, description="most images in one forward pass")
    batch_wait_ms: float = Field(
        10.0, ge=0, description="how long a forward pass waits for more images to batch with"
    )
    max_pending: int = Field(
        256, gt=0,
        description="most images admitted and not yet answered; beyond it requests get 503",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="a request running longer gets 504")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with 503")
    heatmap_max_cells: int = Field(64, gt=0, description="most crops scored for one heat map")
    calibrated: bool = Field(
        False, description="use the threshold in the model folder's calibration.json"
    )
    device: str = Field("auto", description="torch device of the model: auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="compute dtype (autocast)")
    band_width: float | None = Field(
        None, ge=0.0, le=0.5, description="answer 'uncertain' when |P(fake) - threshold| is below this"
    )
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads of the model thread (None: half the CPU cores)"
    )
    memory_budget_bytes: int = Field(
        2048 * MiB, gt=0,
        description="bytes all requests together may hold: bodies (Content-Length, before reading) plus "
                    f"{DECODE_BYTES_PER_PIXEL} bytes per pixel of each image being decoded (from its header, "
                    "before decoding); beyond it requests get 503 with Retry-After",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600,
        description="a connection must deliver a complete request head this soon after it opens or after "
                    "the previous response, or it is closed",
    )
    keep_alive_s: int = Field(5, ge=1, le=3600, description="an idle keep-alive connection is closed after this")
    max_connections: int = Field(
        256, ge=1, description="most open connections and requests; beyond it the server answers 503",
    )
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024, description="largest request head")

    @model_validator(mode="after")
    def _every_request_fits(self) -> "ServeSettings":
        need = self.max_body_bytes + self.max_pixels * DECODE_BYTES_PER_PIXEL
        if self.memory_budget_bytes < need:
            raise ValueError(
                f"memory_budget_bytes ({self.memory_budget_bytes}) must hold the largest request: its body "
                f"({self.max_body_bytes} bytes: max_images x max_upload_bytes plus headers) and one image at "
                f"max_pixels decoding ({self.max_pixels} x {DECODE_BYTES_PER_PIXEL} bytes), {need} bytes in all; "
                "raise the budget or lower those limits"
            )
        if self.max_pending < max(self.max_images, 2):
            raise ValueError(
                f"max_pending ({self.max_pending}) must be at least max_images ({self.max_images}) and 2, "
                "or some requests could never be served"
            )
        return self

    @property
    def heatmap_cells(self) -> int:
        """Crops per heat map: ``heatmap_max_cells``, or fewer so that a heat map (crops plus the
        whole image) always fits in ``max_pending``."""
        return max(1, min(self.heatmap_max_cells, self.max_pending - 1))

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every file at its limit plus headers."""
        return self.max_images * (self.max_upload_bytes + 16 * 1024) + 64 * 1024

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> "ServeSettings":
        """Defaults, then ``AIGI_SERVE_*`` variables, then ``overrides`` (``None`` values skipped)."""
        environ = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in environ and environ[key] != "":
                data[name] = environ[key]
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()
            )
            raise ValueError(f"invalid server settings ({problems})") from None

    def public(self) -> dict[str, Any]:
        """The limits a client may want to know (never the token)."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_images": self.max_images,
            "max_batch": self.max_batch,
            "max_pending": self.max_pending,
            "request_timeout_s": self.request_timeout_s,
            "memory_budget_bytes": self.memory_budget_bytes,
            "header_timeout_s": self.header_timeout_s,
            "max_connections": self.max_connections,
            "heatmap_max_cells": self.heatmap_cells,
            "auth": self.token is not None,
        }
