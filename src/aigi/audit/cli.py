"""``aigi audit``: find the shortcuts in a dataset; optionally write a copy without them.

Heavy imports stay inside the command so ``aigi --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to the ``aigi`` app."""

    @app.command()
    def audit(
        data: Path = typer.Argument(..., help="images: a folder or manifest in any layout `aigi eval` reads"),
        layout: str = typer.Option("auto", help="auto|subsets|progan|genimage|manifest"),
        split: Optional[str] = typer.Option(None, help="split folder (GenImage: train or val)"),
        output: Optional[Path] = typer.Option(None, "--output", "-o",
                                              help="write audit.md, audit.html, audit.json, attributes.csv here"),
        pixels: bool = typer.Option(False, "--pixels/--headers-only",
                                    help="also compute pixel statistics (decodes every file; slower)"),
        bootstrap: int = typer.Option(200, "--bootstrap", help="bootstrap resamples for the AUROC intervals"),
        seed: int = typer.Option(0, "--seed"),
        neutralize: Optional[Path] = typer.Option(
            None, "--neutralize", help="write a copy re-encoded to one format, quality and size, metadata "
                                       "stripped, into this new folder; then `aigi audit` it"),
        fmt: str = typer.Option("jpeg", "--format", help="--neutralize: jpeg, png or webp"),
        quality: int = typer.Option(95, "--quality", help="--neutralize: JPEG/WebP quality"),
        size: int = typer.Option(256, "--size", help="--neutralize: side of the square output in pixels"),
        allow_outside: bool = typer.Option(False, "--allow-outside",
                                           help="let a manifest name files outside its own folder"),
    ) -> None:
        """Audit a dataset for shortcuts (format, quality, size, EXIF, ...) that tell real from fake.

        Exit 3 when some files or folders could not be read (each is listed with its reason).
        """
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from ..cli import console, out
        from ..data.layouts import LayoutError
        from .core import audit as run_audit

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=console, transient=True)
        try:
            with bar:
                task = bar.add_task("reading files", total=None)
                result = run_audit(data, layout=layout, split=split, pixels=pixels, bootstrap=bootstrap, seed=seed,
                                   progress=lambda d, n: bar.update(task, completed=d, total=n),
                                   allow_outside=allow_outside)
        except (LayoutError, ValueError, FileNotFoundError, OSError) as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}")
            raise typer.Exit(1)
        out.print(_table(result))
        for path, reason in result.errors:
            console.print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}")
        console.print(f"{len(result.paths)} file(s) audited, {len(result.errors)} skipped, in {result.seconds:.1f} s")
        if output is not None:
            from .report import write_report

            md = write_report(result, output)
            console.print(f"wrote {escape(str(md))} and {escape(str(md.with_suffix('.html')))}")
        if neutralize is not None:
            from .neutralize import neutralize as run_neutralize

            try:
                with bar:
                    task = bar.add_task("neutralizing", total=None)
                    res = run_neutralize(data, neutralize, layout=layout, split=split, fmt=fmt, quality=quality,
                                         size=size, progress=lambda d, n: bar.update(task, completed=d, total=n))
            except (ValueError, FileExistsError, OSError) as err:
                console.print(f"[bold red]error:[/] {escape(str(err))}")
                raise typer.Exit(1)
            console.print(f"wrote {res.written} neutralized file(s) and {escape(str(res.manifest))}; "
                          f"run `aigi audit {escape(str(neutralize))}` to see what is left")
        if result.errors:
            raise typer.Exit(3)  # = aigi.evaluate.runner.EXIT_SOME_SKIPPED: something was skipped


def _table(result):
    """The verdict per subset as a rich Table (cells as Text: file names are never markup)."""
    from rich.table import Table
    from rich.text import Text

    from .core import MODEL
    from .report import summary_rows

    head, rows = summary_rows(result.summary())
    table = Table("subset", "verdict", "#real", "#fake", "strongest attribute", "AUROC [95% CI]", "metadata model",
                  title="shortcut audit (AUROC: 0.5 tells nothing, 1.0 tells all)")
    style = {"shortcut": "bold red", "suspicious": "yellow", "clean": "green"}
    for subset, row in zip(result.separations, rows):
        top = next((r for r in result.separations[subset] if r.verdict and r.attribute != MODEL), None)
        cells = [Text(c.replace("**", "")) for c in row[:4]]
        cells[1].stylize(style.get(row[1].strip("*"), ""))
        table.add_row(*cells, Text(top.attribute if top else "–"), Text(row[5]), Text(row[6]))
    return table
