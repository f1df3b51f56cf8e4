"""``aigi zoo list`` and ``aigi pull NAME [--file PATH]``: official checkpoints by name."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add ``zoo list`` and ``pull``."""
    zoo = typer.Typer(no_args_is_help=True, help="Official checkpoint releases, by name.")

    @zoo.command("list")
    def list_cmd(
        long: bool = typer.Option(False, "--long", "-l", help="every field of every release, one block each"),
    ) -> None:
        """Every official release with public weights: method, training data, file, where, checksum, preset."""
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from .zoo import RELEASES, expected_sha256

        out = Console(soft_wrap=long)
        if long:
            for r in RELEASES.values():
                sha, origin = expected_sha256(r)
                out.print(Text(r.name, style="bold"))
                for label, value in (("method", r.method), ("paper", r.paper), ("training data", r.training_data),
                                     ("file", r.file_name), ("locations", ", ".join(r.locations) or None),
                                     ("sha256", f"{sha} ({origin})" if sha else None), ("converter", r.converter),
                                     ("preset", r.preset), ("license", r.license), ("reported", r.reported),
                                     ("facts from", r.source)):
                    out.print(Text(f"  {label}: {value if value else 'unknown'}"))
            return
        table = Table(box=None, title="official releases (aigi zoo list --long for every field)")
        for col in ("name", "method", "where", "sha256", "preset"):
            table.add_column(col, no_wrap=col in ("name", "preset"), overflow="fold")
        for r in RELEASES.values():
            sha, origin = expected_sha256(r)
            where = ("hub" if r.hf_repo else "https" if r.urls else "drive, by hand"
                     if (r.gdrive_file or r.gdrive_folder) else "by hand")
            table.add_row(*(Text(v) for v in (r.name, r.method, where, origin if sha else "unknown", r.preset)))
        out.print(table)

    app.add_typer(zoo, name="zoo")

    @app.command("pull")
    def pull_cmd(
        name: str = typer.Argument(..., help="release name (aigi zoo list)"),
        file: Optional[Path] = typer.Option(None, "--file", help="import a checkpoint you downloaded by hand"),
        force: bool = typer.Option(False, "--force", help="convert again even when the cache holds the model"),
    ) -> None:
        """Fetch (or import with --file), verify and convert an official checkpoint; prints the model folder."""
        from rich.console import Console
        from rich.markup import escape

        from .zoo import pull

        err = Console(stderr=True, soft_wrap=True)
        try:
            folder = pull(name, file=file, force=force, say=lambda msg: err.print(escape(msg)))
        except (ValueError, FileNotFoundError, OSError) as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1)
        typer.echo(str(folder))
