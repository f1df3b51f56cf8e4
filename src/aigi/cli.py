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
from rich.markup import escape
from rich.table import Table
from rich.text import Text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Detect AI-generated images: train, evaluate, benchmark and serve detectors.")
console = Console(stderr=True, soft_wrap=True)  # never break a file path across lines
out = Console()


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(err))}")
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
    resume_from: Optional[Path] = typer.Option(
        None, "--resume-from", help="continue from this checkpoint folder (e.g. an older one when the latest is damaged)"),
) -> None:
    """Train a detector from a YAML recipe; the run folder becomes a loadable detector."""
    from .train import load_recipe
    from .train import train as run_train

    try:
        cfg = load_recipe(config, overrides or [])
        result = run_train(cfg, output, resume=resume, resume_from=resume_from, progress=sys.stderr.isatty())
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
        _fail(err)
    if result.interrupted:
        raise typer.Exit(130)
    if int(os.environ.get("RANK", "0")) == 0:  # once, also under `accelerate launch`
        console.print(f"trained {cfg.detector} for {result.steps} steps → {escape(str(result.output))}")


_DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
_DTYPE_HELP = "float32, bfloat16 or float16 (autocast; faster on GPUs, scores differ slightly)"
_MODEL_HELP = "detector folder, zoo:NAME, FILE.onnx or a Hugging Face Hub id user/repo"


@app.command("eval")
def eval_cmd(
    data: Path = typer.Argument(..., help="test data: folder or manifest"),
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    layout: str = typer.Option("auto", help="auto|subsets|progan|genimage|manifest"),
    split: Optional[str] = typer.Option(None, help="GenImage split (default val)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="folder for metrics.json and scores.csv (default MODEL/eval)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers", help="decoding worker processes"),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=_DTYPE_HELP),
    bf16: bool = typer.Option(False, "--bf16", help="same as --dtype bfloat16"),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the detector (slow first batch)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch intra-op threads (default: all cores)"),
    draft: bool = typer.Option(False, "--draft",
                               help="JPEG draft decoding for resize preprocessing (faster; pixels differ slightly)"),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (with a Hub id)"),
    allow_outside: bool = typer.Option(False, "--allow-outside",
                                       help="let a manifest name files outside its own folder"),
    preprocess: Optional[str] = typer.Option(
        None, "--preprocess", help="a test preprocessing preset (docs/preprocessing.md) instead of the model's own; "
        "recorded in metrics.json"),
) -> None:
    """Evaluate a detector on labelled data: per-subset table, metrics.json, scores.csv.

    Exit 3 if some files or folders could not be read (each is listed with its reason).

    Under `accelerate launch --num_processes N -m aigi.cli eval ...` the images are split
    across the processes; the main process writes the same files as one process would.
    Ctrl-C keeps the scores written so far in scores.csv and exits 130.
    """
    from .data.names import name_to_text
    from .evaluate import evaluate
    from .evaluate.runner import Interrupted

    if output is None:
        if not Path(model).is_dir():
            _fail(ValueError(f"--model {model} is not a local folder: give --output for the results"))
        output = Path(model) / "eval"
    try:
        pre = None
        if preprocess is not None:
            from .data.transforms import preset

            pre = preset(preprocess)  # native sizes (test "none"): the Predictor scores one image per batch
        report = evaluate(model, data, layout=layout, split=split, output=output, preprocess=pre,
                          batch_size=batch_size, num_workers=workers, progress=sys.stderr.isatty(),
                          device=None if device == "auto" else device, dtype="bfloat16" if bf16 else dtype,
                          compile=compile_model, threads=threads, draft=draft, revision=revision,
                          allow_outside=allow_outside)
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        _fail(err)
    except KeyboardInterrupt as err:
        if isinstance(err, Interrupted) and err.path is not None:
            console.print(f"interrupted: {err.scored} score(s) were written to ", Text(str(err.path)),
                          "; metrics.json was not written")
        else:
            console.print("interrupted: nothing was written")
        raise typer.Exit(130)
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, only the main process reports
        return
    out.print(metrics_table(report))
    for s in report["skipped"]:
        console.print("[yellow]skipped[/] ", Text(s["reason"]))
    console.print("wrote ", Text(name_to_text(output / "metrics.json")))
    if report["skipped"]:
        _exit_some_skipped(len(report["skipped"]))


def _exit_some_skipped(n: int) -> None:
    """Exit 3 (some files were skipped), except under `accelerate launch`, whose launcher reports
    any non-zero exit of a process as a crash: there the count is said and the exit is 0."""
    from .evaluate.runner import EXIT_SOME_SKIPPED

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        console.print(f"{n} file(s) skipped (listed above); exit code 0 under accelerate launch, "
                      f"{EXIT_SOME_SKIPPED} in one process")
        return
    raise typer.Exit(EXIT_SOME_SKIPPED)


def metrics_table(report: dict) -> Table:
    """The field's table: one row per subset plus the mean."""
    from .evaluate.metrics import DISPLAY

    cols = ["acc", "r_acc", "f_acc", "ap", "auroc", "eer", "n_real", "n_fake"]
    table = Table("subset", *(DISPLAY[c] for c in cols), title=f"{report['method']} @ threshold {report['threshold']:.3g}")

    def fmt(v):
        return "–" if v is None else (str(v) if isinstance(v, int) else f"{100 * v:.1f}")

    for name, m in report["subsets"].items():
        table.add_row(Text(name), *(fmt(m[c]) for c in cols))
    table.add_row("[bold]mean[/]", *(fmt(report["mean"][c]) for c in cols))
    return table


@app.command()
def detect(
    paths: List[Path] = typer.Argument(..., help="image files and folders (searched recursively)"),
    model: str = typer.Option(..., "--model", "-m", help=_MODEL_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="FILE.csv or FILE.jsonl"),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers"),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=_DTYPE_HELP),
    threshold: Optional[float] = typer.Option(None, help="override the model's threshold"),
    calibrated: bool = typer.Option(False, "--calibrated",
                                    help="use the model folder's calibration.json (threshold, and its abstain band)"),
    band_width: Optional[float] = typer.Option(None, "--band-width",
                                               help="answer 'uncertain' when |P(fake) - threshold| is below this"),
    resume: bool = typer.Option(False, "--resume",
                                help="continue an interrupted run: skip images already in --output, append the rest"),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (with a Hub id)"),
) -> None:
    """Score images: one row per image with P(fake) and the verdict (real, fake, or uncertain in an abstain band).

    Exit 3 if some were skipped. Under `accelerate launch --num_processes N -m aigi.cli
    detect ...` the images are split across the processes and the main process writes
    one merged output.
    """
    from .data.names import name_to_text
    from .evaluate.runner import detect as run_detect

    try:
        rows, errors = run_detect(model, paths, output=output, batch_size=batch_size, num_workers=workers,
                                  threshold=threshold, progress=sys.stderr.isatty(), resume=resume,
                                  calibrated=calibrated, band_width=band_width,
                                  device=None if device == "auto" else device, dtype=dtype, revision=revision)
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        _fail(err)
    except KeyboardInterrupt:
        if output is not None:
            console.print("interrupted: the rows scored so far are in ", Text(str(output)),
                          "; rerun with --resume to continue")
        raise typer.Exit(130)
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`, only the main process reports
        return
    if output is None:
        table = Table("path", "P(fake)", "verdict", box=None)
        for r in rows:
            table.add_row(Text(name_to_text(r["path"])), f"{r['p_fake']:.4f}", r["verdict"])
        out.print(table)
    for path, reason in errors:
        console.print("[yellow]skipped[/] ", Text(reason))
    console.print(f"scored {len(rows)} image(s), skipped {len(errors)}",
                  *((" → ", Text(str(output))) if output else ()))
    if errors:
        _exit_some_skipped(len(errors))


@app.command()
def calibrate(
    data: Path = typer.Argument(..., help="labelled data (folder or manifest): its reals set the threshold"),
    model: str = typer.Option(..., "--model", "-m", help="detector folder (calibration.json is written into it)"),
    fpr: float = typer.Option(0.05, "--fpr", help="target false-positive rate on the reals"),
    fnr: Optional[float] = typer.Option(None, "--fnr", help="abstain band: its low edge meets this false-negative "
                                        "rate on the fakes (needs fakes in DATA)"),
    band_width: Optional[float] = typer.Option(None, "--band-width", help="abstain band: threshold ± this width"),
    layout: str = typer.Option("auto", help="auto|subsets|progan|genimage|manifest"),
    split: Optional[str] = typer.Option(None, help="GenImage split (default val)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers"),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=_DTYPE_HELP),
) -> None:
    """Measure a threshold at a target FPR (and an optional abstain band) on DATA; write MODEL/calibration.json.

    `detect --calibrated` and `serve --calibrated` then use it.
    """
    from .detectors.folder import CALIBRATION_NAME
    from .inference.calibrate import calibrate as run_calibrate

    try:
        cal, errors = run_calibrate(model, data, fpr=fpr, fnr=fnr, band_width=band_width, layout=layout, split=split,
                                    batch_size=batch_size, num_workers=workers,
                                    device=None if device == "auto" else device, dtype=dtype,
                                    progress=sys.stderr.isatty())
    except (ValueError, FileNotFoundError, KeyError, OSError) as err:
        _fail(err)
    for path, reason in errors:
        console.print("[yellow]skipped[/] ", Text(reason))
    tpr = "–" if cal.tpr is None else f"{100 * cal.tpr:.1f}%"
    out.print(f"threshold {cal.threshold:.6g}: FPR {100 * cal.fpr:.2f}% on {cal.n_real} reals "
              f"(target {100 * fpr:g}%), TPR {tpr} on {cal.n_fake} fakes")
    if cal.band is not None:
        out.print(f"abstain band [{cal.band.low:.6g}, {cal.band.high:.6g}) ({cal.band.source})")
    console.print("wrote ", Text(str(Path(model) / CALIBRATION_NAME)))


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
_COMMAND_MODULES = ("aigi.convert.cli", "aigi.serve.cli", "aigi.benchmark.cli", "aigi.data.cli", "aigi.zoo_cli",
                    "aigi.export.cli", "aigi.audit.cli")


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
