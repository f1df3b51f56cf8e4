"""``aigi convert``: import official checkpoints into detector folders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_CLIP = "openai/clip-vit-large-patch14"  # = aigi.backbones.clip.DEFAULT_CLIP, kept literal for a fast --help


def _run(fn, *args, **kwargs) -> None:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    try:
        out = fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(1)
    console.print(f"converted {args[0]} → {out} (load it with aigi.load_detector or --model {out})")


def register(app: typer.Typer) -> None:
    """Add the ``convert`` sub-app (``univfd``, ``npr``, ``cnnspot``, ``effort-official``)."""
    convert = typer.Typer(no_args_is_help=True, help="Import official checkpoints into detector folders.")

    output_opt = typer.Option(..., "--output", "-o", help="detector folder to write")
    threshold_opt = typer.Option(None, help="decision threshold on P(fake) to store (default 0.5)")
    force_opt = typer.Option(False, "--force", help="replace a detector already in --output")

    @convert.command("univfd")
    def univfd(
        checkpoint: Path = typer.Argument(..., help="UnivFD's fc_weights.pth (weight [1, 768], bias [1])"),
        output: Path = output_opt,
        backbone: str = typer.Option(_CLIP, "--backbone", help="CLIP hub id or local folder"),
        full: bool = typer.Option(False, "--full", help="store the CLIP tower too (a self-contained folder)"),
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """UnivFD: the official linear head on a CLIP ViT-L/14 tower."""
        from .baselines import convert_univfd

        _run(convert_univfd, checkpoint, output, backbone=backbone, full=full, threshold=threshold, overwrite=force)

    @convert.command("npr")
    def npr(
        checkpoint: Path = typer.Argument(..., help="official NPR .pth (bare state dict, or under 'model')"),
        output: Path = output_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """NPR: the official truncated ResNet-50 (conv1, bn1, layer1, layer2, fc1)."""
        from .baselines import convert_npr

        _run(convert_npr, checkpoint, output, threshold=threshold, overwrite=force)

    @convert.command("cnnspot")
    def cnnspot(
        checkpoint: Path = typer.Argument(..., help="official CNNSpot .pth ({'model': ResNet-50 state dict})"),
        output: Path = output_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """CNNSpot: the official ResNet-50 with fc Linear(2048, 1)."""
        from .baselines import convert_cnnspot

        _run(convert_cnnspot, checkpoint, output, threshold=threshold, overwrite=force)

    @convert.command("effort-official")
    def effort_official(
        checkpoint: Path = typer.Argument(..., help="official Effort checkpoint"),
        output: Path = output_opt,
        backbone: str = typer.Option(_CLIP, "--backbone", help="CLIP hub id or local folder"),
    ) -> None:
        """Effort: an official checkpoint (either of the two published key layouts)."""
        try:
            from .effort import convert_effort_official
        except ImportError as err:
            typer.echo(f"error: the Effort converter is not available ({err})", err=True)
            raise typer.Exit(1)
        _run(convert_effort_official, checkpoint, output, backbone=backbone)

    app.add_typer(convert, name="convert")
