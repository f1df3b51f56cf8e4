"""``aigi convert``: import official checkpoints into detector folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..detectors.folder import CONVERSION_NAME

_CLIP = "openai/clip-vit-large-patch14"  # = aigi.backbones.clip.DEFAULT_CLIP, kept literal for a fast --help
_PRESET_HELP = "test preprocessing preset to store instead of the codebase's own (see docs/preprocessing.md)"


def _run(fn, *args, **kwargs) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, soft_wrap=True)
    try:
        out = fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, OSError) as err:
        console.print(f"[bold red]error:[/] {escape(str(err))}")
        raise typer.Exit(1)
    console.print(f"converted {escape(str(args[0]))} → {escape(str(out))} "
                  f"(load it with aigi.load_detector or --model {escape(str(out))})")
    record = Path(out) / CONVERSION_NAME
    if record.is_file():
        chosen = json.loads(record.read_text()).get("preset")
        if chosen:
            console.print(f"test preprocessing: preset {escape(chosen)} (override with --preset)")


def register(app: typer.Typer) -> None:
    """Add the ``convert`` sub-app (univfd, npr, cnnspot, effort-official, dffreq, dgsnet)."""
    convert = typer.Typer(no_args_is_help=True, help="Import official checkpoints into detector folders.")

    output_opt = typer.Option(..., "--output", "-o", help="detector folder to write")
    threshold_opt = typer.Option(None, help="decision threshold on P(fake) to store (default 0.5)")
    force_opt = typer.Option(False, "--force", help="replace a detector already in --output")
    preset_opt = typer.Option(None, "--preset", help=_PRESET_HELP)

    @convert.command("univfd")
    def univfd(
        checkpoint: Path = typer.Argument(..., help="UnivFD's fc_weights.pth (weight [1, 768], bias [1])"),
        output: Path = output_opt,
        backbone: str = typer.Option(_CLIP, "--backbone", help="CLIP hub id or local folder"),
        full: bool = typer.Option(False, "--full", help="store the CLIP tower too (a self-contained folder)"),
        preset: Optional[str] = preset_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """UnivFD: the official linear head on a CLIP ViT-L/14 tower."""
        from .baselines import convert_univfd

        _run(convert_univfd, checkpoint, output, backbone=backbone, full=full, preset=preset, threshold=threshold,
             overwrite=force)

    @convert.command("npr")
    def npr(
        checkpoint: Path = typer.Argument(..., help="official NPR .pth (bare state dict, or under 'model')"),
        output: Path = output_opt,
        preset: Optional[str] = preset_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """NPR: the official truncated ResNet-50 (conv1, bn1, layer1, layer2, fc1)."""
        from .baselines import convert_npr

        _run(convert_npr, checkpoint, output, preset=preset, threshold=threshold, overwrite=force)

    @convert.command("cnnspot")
    def cnnspot(
        checkpoint: Path = typer.Argument(..., help="official CNNSpot .pth ({'model': ResNet-50 state dict})"),
        output: Path = output_opt,
        preset: Optional[str] = preset_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """CNNSpot: the official ResNet-50 with fc Linear(2048, 1)."""
        from .baselines import convert_cnnspot

        _run(convert_cnnspot, checkpoint, output, preset=preset, threshold=threshold, overwrite=force)

    @convert.command("effort-official")
    def effort_official(
        checkpoint: Path = typer.Argument(..., help="official Effort checkpoint"),
        output: Path = output_opt,
        backbone: str = typer.Option(_CLIP, "--backbone", help="CLIP hub id or local folder"),
        preset: Optional[str] = preset_opt,
        force: bool = force_opt,
    ) -> None:
        """Effort: an official checkpoint (either of the two published key layouts)."""
        from .effort import convert_effort_official

        _run(convert_effort_official, checkpoint, output, backbone=backbone, preset=preset, overwrite=force)

    @convert.command("dffreq")
    def dffreq(
        checkpoint: Path = typer.Argument(..., help="official DFFreq .pth (current release or May 2025)"),
        output: Path = output_opt,
        preset: Optional[str] = preset_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """DFFreq: either release (detected from the key names); its own test preprocessing."""
        from .dffreq import convert_dffreq

        _run(convert_dffreq, checkpoint, output, preset=preset, threshold=threshold, overwrite=force)

    @convert.command("dgsnet")
    def dgsnet(
        checkpoint: Path = typer.Argument(..., help="official DGS-Net stage-2 .pth (model_epoch_step2.pth)"),
        output: Path = output_opt,
        backbone: str = typer.Option(_CLIP, "--backbone", help="CLIP architecture: hub id, preset or local folder"),
        lora_alpha: float = typer.Option(6.0, "--lora-alpha", help="LoRA alpha the checkpoint was trained with (official 6)"),
        preset: Optional[str] = preset_opt,
        threshold: Optional[float] = threshold_opt,
        force: bool = force_opt,
    ) -> None:
        """DGS-Net: the official stage-2 wrapper (LoRA student, text head, teacher head)."""
        from .dgsnet import convert_dgsnet

        _run(convert_dgsnet, checkpoint, output, backbone=backbone, lora_alpha=lora_alpha, preset=preset,
             threshold=threshold, overwrite=force)

    app.add_typer(convert, name="convert")
