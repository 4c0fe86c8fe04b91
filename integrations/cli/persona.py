"""``dyad persona``: validate, show and list personas."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from agent.persona import Persona, PersonaError, available_personas, load_persona
from avatar_core.config import AppSettings

app = typer.Typer(help="Validate, show and list personas.", no_args_is_help=True)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def report(error: PersonaError) -> None:
    """Print every problem of a persona with its field path and hint."""
    err.print(f"[bold red]invalid persona[/] {error.source}: {len(error.issues)} problem(s)", highlight=False)
    for issue in error.issues:
        err.print(f"  [bold]{issue.location}[/]: {issue.message}", highlight=False, markup=True)
        err.print(f"      hint: {issue.hint}", highlight=False, style="dim")


def load_or_exit(name: str) -> Persona:
    """Load a persona, or print its problems and exit with code 2."""
    try:
        return load_persona(name)
    except PersonaError as error:
        report(error)
        raise typer.Exit(2) from None


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="persona YAML files", show_default=False),
) -> None:
    """Check persona files; print every error with its field path and a hint (exit code 2 if any)."""
    bad = 0
    for path in files:
        try:
            persona = load_persona(str(path))
        except PersonaError as error:
            report(error)
            bad += 1
            continue
        out.print(f"[green]ok[/] {path} ({persona.identity.display_name})", highlight=False)
    if bad:
        raise typer.Exit(2)


@app.command()
def show(
    name: str = typer.Argument("default", help="persona name or path to a YAML file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of YAML"),
) -> None:
    """Print the resolved persona: the file, defaults and DYAD_* environment overrides together."""
    persona = load_or_exit(name)
    if as_json:
        typer.echo(persona.model_dump_json(indent=2))
    else:
        typer.echo(yaml.safe_dump(persona.model_dump(mode="json"), sort_keys=False, allow_unicode=True))


@app.command("list")
def list_personas() -> None:
    """List the personas that can be named on the command line."""
    table = Table("name", "display name", "file")
    for name, path in available_personas(AppSettings()).items():
        try:
            display = load_persona(name).identity.display_name
        except PersonaError as error:
            display = f"[red]invalid ({len(error.issues)} problems)[/]"
        table.add_row(name, display, str(path))
    out.print(table)


@app.command()
def preview(
    name: str = typer.Argument("default", help="persona name or path to a YAML file"),
    out: Path = typer.Option(Path("preview.mp4"), "--out", "-o", help="MP4 file to write"),
    seconds: float = typer.Option(6.0, min=2.0, max=60.0, help="clip length"),
) -> None:
    """Render a clip of the persona's face cycling through visemes, blinks, a smile, a nod and gaze shifts."""
    from avatar_core.media import write_mp4
    from avatar_core.preview import preview_motion
    from avatar_core.render import make_renderer

    persona = load_or_exit(name)
    video = persona.appearance.video
    try:
        renderer = make_renderer(persona.appearance)
    except ValueError as error:  # a portrait photo without a usable face
        err.print(f"[bold red]cannot build the face[/]: {error}", highlight=False)
        raise typer.Exit(2) from None
    motion = preview_motion(video.fps, seconds)  # (T, D)
    count = write_mp4(out, (renderer.render(m) for m in motion), video.fps)
    out_console = Console()
    out_console.print(
        f"wrote {out}: {count} frames, {video.width}x{video.height} at {video.fps} fps "
        f"({persona.identity.display_name}, {persona.appearance.renderer} renderer)",
        highlight=False,
    )
