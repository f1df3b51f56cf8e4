"""``aigi synth``: write the built-in benchmark of simulated cameras and generators.

Registered on the main app by :func:`register`; the generator code is imported only when
the command runs, so ``aigi --help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        out_dir: Path = typer.Argument(..., help="folder to write <generator>/{0_real,1_fake}/ into"),
        per_class: int = typer.Option(200, "--per-class", help="images per class and generator"),
        size: int = typer.Option(256, "--size", help="image side in pixels (a multiple of 8, >= 16)"),
        generators: Optional[str] = typer.Option(
            None, "--generators", help="comma-separated generator names (default: all six, listed above)"),
        seed: int = typer.Option(0, "--seed", help="seed of the whole set; the same seed gives the same bytes"),
        workers: int = typer.Option(min(2, os.cpu_count() or 1), "--workers", help="worker processes"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace the images of a previous run"),
    ) -> None:
        """Write the built-in benchmark: simulated camera photos against simulated generators.

        Generators: gan, stylegan, ldm, vq, diffusion, inpaint (see docs/synthetic.md).
        """
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from .synthetic import LABELS, describe_generators, generate_benchmark

        err, out = Console(stderr=True), Console()
        names = None if generators is None else [g.strip() for g in generators.split(",") if g.strip()]
        with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=not err.is_terminal) as bar:
            task = bar.add_task("synth", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                root = generate_benchmark(out_dir, per_class=per_class, size=size, generators=names, seed=seed,
                                          workers=workers, progress=tick, overwrite=overwrite)
            except (ValueError, OSError) as exc:
                err.print(f"[bold red]error:[/] {escape(str(exc))}")
                raise typer.Exit(1) from None
        table = Table("subset", "real", "fake", "generator", title=f"{escape(str(root))} ({size}x{size}, seed {seed})")
        for name, summary in describe_generators().items():
            if names is not None and name not in names:
                continue
            counts = [sum(1 for _ in (root / name / lab).iterdir()) for lab in LABELS]
            table.add_row(name, str(counts[0]), str(counts[1]), summary)
        out.print(table)
        err.print(f"wrote {escape(str(root))}; evaluate with: aigi eval --model MODEL_DIR {escape(str(root))}")
