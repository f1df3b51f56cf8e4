"""``aigi serve``: the HTTP API and web page over one detector folder."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``aigi`` app (heavy imports stay inside the command)."""

    @app.command("serve")
    def serve(
        model: str = typer.Option(..., "--model", "-m",
                                  help="detector folder, zoo:NAME, FILE.onnx or a Hugging Face Hub id user/repo"),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (with a Hub id)"),
        host: Optional[str] = typer.Option(None, help="interface to listen on (default 127.0.0.1)"),
        port: Optional[int] = typer.Option(None, help="TCP port (default 8000)"),
        token: Optional[str] = typer.Option(
            None, help="require 'Authorization: Bearer TOKEN' on /v1/* (or set AIGI_SERVE_TOKEN)"
        ),
        calibrated: bool = typer.Option(
            False, "--calibrated",
            help="use the model folder's calibration.json (threshold, and its abstain band)"
        ),
        band_width: Optional[float] = typer.Option(
            None, "--band-width", help="answer 'uncertain' when |P(fake) - threshold| is below this"
        ),
        max_upload_mb: Optional[float] = typer.Option(None, help="largest file, MiB (default 20)"),
        max_pixels: Optional[int] = typer.Option(None, help="largest image, width x height (default 40e6)"),
        max_images: Optional[int] = typer.Option(None, help="most files per request (default 16)"),
        max_batch: Optional[int] = typer.Option(None, help="most images per forward pass (default 32)"),
        batch_wait_ms: Optional[float] = typer.Option(None, help="batching wait budget, ms (default 10)"),
        max_pending: Optional[int] = typer.Option(None, help="pending images before 503 (default 256)"),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="per-request timeout, s (default 30)"),
        device: Optional[str] = typer.Option(None, help="auto (CUDA, then MPS, then CPU; the default), cpu, cuda, mps"),
        dtype: Optional[str] = typer.Option(None, help="float32 (default), bfloat16 or float16 (autocast)"),
        threads: Optional[int] = typer.Option(None, help="torch threads of the model (default: half the cores)"),
        memory_budget_mb: Optional[float] = typer.Option(
            None, help="memory all requests may hold: bodies plus 24 bytes per pixel being decoded, MiB "
                       "(default 2048); beyond it 503"),
        header_timeout: Optional[float] = typer.Option(
            None, help="seconds a connection has to send a complete request head (default 10)"),
        keep_alive: Optional[int] = typer.Option(None, help="idle keep-alive connections close after this, s (default 5)"),
        max_connections: Optional[int] = typer.Option(None, help="most open connections; beyond it 503 (default 256)"),
    ) -> None:
        """Serve a detector: POST /v1/detect, /v1/heatmap, GET /v1/model, a web page at /.

        Every option can also come from an environment variable AIGI_SERVE_<NAME>
        (e.g. AIGI_SERVE_MAX_IMAGES=8); options given here win.
        """
        from rich.console import Console
        from rich.text import Text

        console = Console(stderr=True, soft_wrap=True)  # never break a path across lines
        try:
            import uvicorn

            from .app import create_app
            from .settings import MiB, ServeSettings

            settings = ServeSettings.from_env(
                host=host, port=port, token=token, calibrated=calibrated or None,
                max_upload_bytes=None if max_upload_mb is None else int(max_upload_mb * MiB),
                max_pixels=max_pixels, max_images=max_images, max_batch=max_batch,
                batch_wait_ms=batch_wait_ms, max_pending=max_pending, request_timeout_s=timeout,
                device=device, dtype=dtype, band_width=band_width, threads=threads,
                memory_budget_bytes=None if memory_budget_mb is None else int(memory_budget_mb * MiB),
                header_timeout_s=header_timeout, keep_alive_s=keep_alive, max_connections=max_connections,
            )
            web = create_app(model, settings, revision)
        except (ValueError, FileNotFoundError, KeyError, OSError) as err:
            console.print("[bold red]error:[/] ", Text(str(err)), sep="")
            raise typer.Exit(1)
        if settings.token is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
            console.print("[yellow]warning:[/] listening on ", Text(settings.host), " without a token: "
                          "anyone who can reach this port can use the model (pass --token)", sep="")
        state = web.state.aigi
        band = "" if state.band is None else f", uncertain in [{state.band.low:.4g}, {state.band.high:.4g})"
        console.print(f"serving {state.predictor.method} from ", Text(str(model)),
                      f" at http://{settings.host}:{settings.port}/ on {state.predictor.device} "
                      f"({state.predictor.dtype}; threshold {state.threshold:.4g} from {state.threshold_source}{band})",
                      sep="")
        from .connections import uvicorn_options

        uvicorn.run(web, **uvicorn_options(settings), log_level="info", access_log=False)
