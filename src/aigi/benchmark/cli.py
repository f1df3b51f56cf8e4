"""``aigi bench`` and ``aigi report``: run a benchmark protocol, re-render its report.

Heavy imports stay inside the command functions so ``aigi --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape


def register(app: typer.Typer) -> None:
    """Add the ``bench`` and ``report`` commands to the ``aigi`` app."""

    @app.command()
    def bench(
        protocol: Path = typer.Argument(..., help="benchmark protocol (YAML), e.g. configs/protocols/*.yaml"),
        overrides: Optional[List[str]] = typer.Argument(
            None, help="key=value overrides, e.g. data.test=/data/aigibench detectors.npr.model=runs/npr"),
        output: Optional[Path] = typer.Option(None, "--output", "-o",
                                              help="results folder (default runs/bench/<protocol name>)"),
        device: Optional[str] = typer.Option(None, "--device",
                                             help="auto, cpu, cuda, cuda:N or mps (default: the protocol's run.device)"),
        dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 (autocast); other dtypes "
                                  "than float32 are stored apart"),
        calibrate: bool = typer.Option(False, "--calibrate", help="write calibration.json (threshold at the "
                                       "protocol's FPR on the calibration reals) into every model it trains"),
        allow_outside: bool = typer.Option(False, "--allow-outside",
                                           help="let a manifest name files outside its own folder"),
    ) -> None:
        """Run a benchmark protocol: train what is missing, score what is not stored, write the report.

        Exit 3 when some files or folders could not be read, or some conditions not scored.
        """
        from ..cli import console, out
        from .run import run_protocol
        from .protocol import ProtocolError, load_protocol

        try:
            proto = load_protocol(protocol, overrides or [])
            result = run_protocol(proto, output, console=console, device=device, dtype=dtype,
                                  write_calibration=calibrate, allow_outside=allow_outside)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: what was scored is stored; run the same command to resume")
            raise typer.Exit(130)
        except (ProtocolError, ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}")
            raise typer.Exit(1)
        _print_summary(result.results, console, out)
        for _path, reason in result.unread:
            console.print(f"[yellow]skipped[/] {escape(reason)}")
        console.print(f"{result.scored} new score(s), {result.reused} reused, in {result.seconds:.1f} s; "
                      f"report: {escape(str(result.report))}")
        if result.unread or result.failures:
            raise typer.Exit(3)  # = aigi.evaluate.runner.EXIT_SOME_SKIPPED

    @app.command()
    def report(
        folder: Path = typer.Argument(..., help="a results folder written by `aigi bench` (holds results.sqlite)"),
        protocol_hash: Optional[str] = typer.Option(
            None, "--protocol", help="protocol sha256 (or a prefix) to report; default the latest run's"),
    ) -> None:
        """Re-render report.md, report.html and the plots of a results folder from its store."""
        from ..cli import console, out
        from .report import build_report

        try:
            phash = _full_hash(folder, protocol_hash) if protocol_hash else None
            md, res = build_report(folder, protocol_hash=phash)
        except (ValueError, FileNotFoundError, OSError) as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}")
            raise typer.Exit(1)
        _print_summary(res, console, out)
        console.print(f"wrote {escape(str(md))} and {escape(str(md.with_suffix('.html')))}")


def _full_hash(folder: Path, prefix: str) -> str:
    from .store import STORE_NAME, ResultStore

    if not (folder / STORE_NAME).is_file():
        raise FileNotFoundError(f"{folder} holds no {STORE_NAME}; run `aigi bench` into it first")
    with ResultStore(folder / STORE_NAME) as store:
        hashes = sorted({r["protocol_hash"] for r in store.runs()})
    match = [h for h in hashes if h.startswith(prefix)]
    if len(match) != 1:
        raise ValueError(f"protocol {prefix!r} matches {len(match)} of the stored protocols: "
                         + ", ".join(h[:12] for h in hashes))
    return match[0]


def _print_summary(res, console, out) -> None:
    """Print the leaderboard and the conditions that could not be scored."""
    from .report import leaderboard_table

    if res is None:
        return
    out.print(leaderboard_table(res))
    for name, cond, reason in res.failures:
        console.print(f"[yellow]not scored[/] {escape(str(name))} under {escape(str(cond))}: {escape(str(reason))}")
