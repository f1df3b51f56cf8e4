"""``aigi export``, ``aigi push`` and ``aigi import-hf``: detectors out of and into other formats.

Heavy imports (torch.onnx, onnxruntime, huggingface_hub, transformers) stay inside the
commands so ``aigi --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(err))}")
    raise typer.Exit(1)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def register(app: typer.Typer) -> None:
    """Add ``export``, ``push`` and ``import-hf`` to the ``aigi`` app."""

    @app.command("export")
    def export_cmd(
        model: str = typer.Argument(..., help="detector folder, zoo:NAME or a Hub id user/repo"),
        fmt: str = typer.Option("onnx", "--format", help="output format (onnx)"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="FILE.onnx (default MODEL_DIR/model.onnx)"),
        dtype: str = typer.Option("float32", "--dtype", help="float32 or float16 weights and compute"),
        opset: int = typer.Option(18, "--opset", help="ONNX opset"),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (with a Hub id)"),
    ) -> None:
        """Export the folded detector to ONNX, check it under onnxruntime, and write it with a JSON beside it.

        Refuses to write a file whose logits differ from PyTorch's by more than 1e-4 (float32;
        1e-2 for float16), relative to the logit's size as well.
        """
        if fmt != "onnx":
            _fail(ValueError(f"--format must be onnx, got {fmt!r}"))
        from .onnx import ExportError, export_onnx

        try:
            res = export_onnx(model, output, dtype=dtype, opset=opset, revision=revision)  # type: ignore[arg-type]
        except (ExportError, ValueError, KeyError, FileNotFoundError, OSError) as err:
            _fail(err)
        atol, rtol = res.tolerance
        console.print(f"checked with onnxruntime: largest logit difference {res.max_abs_logit_diff:.3g} "
                      f"(allowed {atol:g} + {rtol:g}·|logit|), largest P(fake) difference {res.max_abs_prob_diff:.3g}")
        console.print(f"wrote {escape(str(res.path))} ({_size(res.size_bytes)}, {res.dtype}, opset {res.opset}) "
                      f"and {escape(str(res.sidecar))}")

    @app.command("push")
    def push_cmd(
        model: Path = typer.Argument(..., help="detector folder"),
        repo_id: str = typer.Argument(..., help="Hugging Face Hub repository, user/repo"),
        revision: Optional[str] = typer.Option(None, "--revision", help="branch to push to (created if needed)"),
        private: bool = typer.Option(False, "--private", help="create the repository as private"),
        message: Optional[str] = typer.Option(None, "--message", "-m", help="commit message"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the model card and the files; upload nothing"),
    ) -> None:
        """Upload a detector folder to the Hugging Face Hub with a generated model card (README.md)."""
        from ..hub import HubError, push

        try:
            res = push(model, repo_id, revision=revision, private=private, commit_message=message, dry_run=dry_run)
        except (HubError, ValueError, KeyError, FileNotFoundError, OSError) as err:
            _fail(err)
        if dry_run:
            out.print(escape(res.card), highlight=False, markup=False)
            console.print("would upload: " + ", ".join(escape(f) for f in res.files))
            return
        console.print(f"uploaded {len(res.files)} file(s) to {escape(repo_id)}: {escape(res.url or '')}")

    @app.command("import-hf")
    def import_hf_cmd(
        source: str = typer.Argument(..., help="transformers image-classification model: folder or Hub id"),
        output: Path = typer.Argument(..., help="detector folder to write"),
        fake_label: List[str] = typer.Option(["fake"], "--fake-label",
                                             help="label name or index meaning AI-generated (repeat for several)"),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision of SOURCE"),
        threshold: float = typer.Option(0.5, "--threshold", help="P(fake) at or above which the verdict is fake"),
    ) -> None:
        """Wrap a transformers image classifier as an aigi detector folder (method hf_classifier)."""
        import aigi

        labels: list[int | str] = [int(v) if v.isdigit() else v for v in fake_label]
        try:
            model = aigi.create_detector("hf_classifier", source=source, revision=revision,
                                         fake_label=labels[0] if len(labels) == 1 else labels, threshold=threshold)
            model.save_pretrained(output)
        except (ValueError, KeyError, OSError) as err:
            _fail(err)
        pre = model.config.preprocess
        console.print(f"wrote {escape(str(output))}: hf_classifier over {escape(source)}, fake = "
                      f"{escape(str([model.model.config.id2label[i] for i in model.fake_ids]))}, preprocessing "
                      f"{pre.test} {pre.size} ({pre.interpolation})")
