"""The ``aigi`` command: thin commands over the library.

Exit codes: 0 success; 1 an error (the message says what was wrong); 2 bad usage;
3 (``detect``) some files could not be scored and were skipped; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Detect AI-generated images: train, evaluate, benchmark and serve detectors.")
console = Console(stderr=True, soft_wrap=True)  # never break a file path across lines
out = Console()


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(1)


@app.command("list")
def list_cmd() -> None:
    """List registered detectors, one line each."""
    from .detectors import list_detectors
    from .detectors.registry import detector_tasks

    tasks = detector_tasks()
    table = Table("name", "task", "summary", box=None)
    for name, summary in list_detectors().items():
        table.add_row(name, ", ".join(tasks[name]), summary)
    out.print(table)


@app.command()
def train(
    config: Path = typer.Argument(..., help="training recipe (YAML)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. max_steps=10"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="run folder"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run folder's latest checkpoint"),
) -> None:
    """Train a detector from a YAML recipe; the run folder becomes a loadable detector."""
    from .train import load_recipe
    from .train import train as run_train

    try:
        cfg = load_recipe(config, overrides or [])
        result = run_train(cfg, output, resume=resume, progress=sys.stderr.isatty())
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
        _fail(err)
    if result.interrupted:
        raise typer.Exit(130)
    if int(os.environ.get("RANK", "0")) == 0:  # once, also under `accelerate launch`
        console.print(f"trained {cfg.detector} for {result.steps} steps → {result.output}")


@app.command("eval")
def eval_cmd(
    data: Path = typer.Argument(..., help="test data: folder or manifest"),
    model: Path = typer.Option(..., "--model", "-m", help="detector folder"),
    layout: str = typer.Option("auto", help="auto|subsets|progan|genimage|manifest"),
    split: Optional[str] = typer.Option(None, help="GenImage split (default val)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for metrics.json and scores.csv"),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers", help="decoding worker processes"),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (faster; scores differ slightly)"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the detector (slow first batch)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: all cores)"),
    draft: bool = typer.Option(False, "--draft",
                               help="JPEG draft decoding for resize preprocessing (faster; pixels differ slightly)"),
) -> None:
    """Evaluate a detector on labelled data: per-subset table, metrics.json, scores.csv.

    Under `accelerate launch --num_processes N -m aigi.cli eval ...` the images are split
    across the processes; the main process writes the same files as one process would.
    """
    from .evaluate import evaluate

    try:
        report = evaluate(model, data, layout=layout, split=split, output=output or (model / "eval"),
                          batch_size=batch_size, num_workers=workers, progress=sys.stderr.isatty(),
                          dtype="bfloat16" if bf16 else "float32", compile=compile_model, threads=threads,
                          draft=draft)
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        _fail(err)
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, only the main process reports
        return
    out.print(metrics_table(report))
    for s in report["skipped"]:
        console.print(f"[yellow]skipped[/] {s['reason']}")
    console.print(f"wrote {(output or (model / 'eval')) / 'metrics.json'}")


def metrics_table(report: dict) -> Table:
    """The field's table: one row per subset plus the mean."""
    from .evaluate.metrics import DISPLAY

    cols = ["acc", "r_acc", "f_acc", "ap", "auroc", "eer", "n_real", "n_fake"]
    table = Table("subset", *(DISPLAY[c] for c in cols), title=f"{report['method']} @ threshold {report['threshold']:.3g}")

    def fmt(v):
        return "–" if v is None else (str(v) if isinstance(v, int) else f"{100 * v:.1f}")

    for name, m in report["subsets"].items():
        table.add_row(name, *(fmt(m[c]) for c in cols))
    table.add_row("[bold]mean[/]", *(fmt(report["mean"][c]) for c in cols))
    return table


@app.command()
def detect(
    paths: List[Path] = typer.Argument(..., help="image files and folders (searched recursively)"),
    model: Path = typer.Option(..., "--model", "-m", help="detector folder"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="FILE.csv or FILE.jsonl"),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers"),
    threshold: Optional[float] = typer.Option(None, help="override the model's threshold"),
    calibrated: bool = typer.Option(False, "--calibrated",
                                    help="use the threshold in the model folder's calibration.json"),
    resume: bool = typer.Option(False, "--resume",
                                help="continue an interrupted run: skip images already in --output, append the rest"),
) -> None:
    """Score images: one row per image with P(fake) and the verdict. Exit 3 if some were skipped."""
    from .evaluate.runner import EXIT_SOME_SKIPPED
    from .evaluate.runner import detect as run_detect

    try:
        rows, errors = run_detect(model, paths, output=output, batch_size=batch_size, num_workers=workers,
                                  threshold=threshold, progress=sys.stderr.isatty(),
                                  resume=resume, calibrated=calibrated)
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        _fail(err)
    except KeyboardInterrupt:
        if output is not None:
            console.print(f"interrupted: the rows scored so far are in {output}; rerun with --resume to continue")
        raise typer.Exit(130)
    if output is None:
        table = Table("path", "P(fake)", "verdict", box=None)
        for r in rows:
            table.add_row(r["path"], f"{r['p_fake']:.4f}", r["verdict"])
        out.print(table)
    for path, reason in errors:
        console.print(f"[yellow]skipped[/] {reason}")
    console.print(f"scored {len(rows)} image(s), skipped {len(errors)}" + (f" → {output}" if output else ""))
    if errors:
        raise typer.Exit(EXIT_SOME_SKIPPED)


@app.command()
def demo(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o"),
    quick: bool = typer.Option(False, "--quick", help="smallest sizes, for a smoke test"),
    backbone: Optional[Path] = typer.Option(None, "--backbone", help="a local CLIP checkpoint folder: adds UnivFD "
                                            "and Effort"),
) -> None:
    """The built-in benchmark: generate images, train detectors, run the four tasks, write a report."""
    from .demo import run_demo

    try:
        run_demo(output, quick=quick, console=console, out=out, backbone=backbone)
    except (ValueError, OSError) as err:
        _fail(err)


# Commands contributed by other packages: each module defines ``register(app)`` and keeps
# its heavy imports inside the command functions, so ``aigi --help`` stays fast.
_COMMAND_MODULES = ("aigi.convert.cli", "aigi.serve.cli", "aigi.benchmark.cli", "aigi.data.cli")


def _register_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that package has no commands (yet); anything else is a bug
                continue
            raise
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
