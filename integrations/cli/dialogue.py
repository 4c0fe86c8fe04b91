"""``dyad dialogue``: two personas talk with each other (scripted, or each with its own LLM) into an MP4."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console


def _finite(value: Any) -> Any:
    """JSON without NaN: undefined figures (no pauses to answer) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def dialogue(
    personas: tuple[str, str] = typer.Option(
        ..., "--personas", help="the two personas, names or YAML paths: --personas A B", show_default=False
    ),
    script: Path | None = typer.Option(None, "--script", help="YAML list of {speaker, text} lines"),
    topic: str | None = typer.Option(None, "--topic", help="without --script: what the LLMs talk about"),
    turns: int = typer.Option(6, "--turns", min=1, max=200, help="with --topic: lines in all"),
    out: Path = typer.Option(Path("scene.mp4"), "--out", "-o", help="MP4 to write"),
    transcript: Path | None = typer.Option(None, "--transcript", help="JSON transcript with line times"),
    layout: str = typer.Option("side-by-side", "--layout", help="side-by-side, or separate (one MP4 each)"),
    height: int | None = typer.Option(
        None, "--height", min=64, max=2048, help="video height of each face (default: the persona's)"
    ),
    cascade_face: str = typer.Option(
        "teacher",
        "--cascade-face",
        help="how a cascade voice's face moves: teacher (from Kokoro's phoneme timing) or model (from the "
        "audio, by the joint model, as live)",
    ),
    seed: int = typer.Option(0, "--seed", help="same seed + same input = same scene"),
) -> None:
    """Two avatars in one scene: each speaks its lines with its own face and voice and listens to the
    other (nods, smiles, gaze) while it speaks. Prints the listener metrics and the speed as one JSON line.
    """
    from agent.persona import PersonaError, load_persona
    from avatar_core.bundled import MissingModelError
    from avatar_core.config import AppSettings
    from integrations.files.dialogue import (
        DialogueError,
        ScriptedLines,
        driven_lines,
        read_script,
        speaker_names,
    )
    from integrations.files.dialogue import (
        dialogue as run_dialogue,
    )
    from integrations.llm.local_server import LocalServerError
    from integrations.stack import SharedModels, StackError

    err = Console(stderr=True, soft_wrap=True)

    def fail(message: str) -> typer.Exit:
        err.print(f"[bold red]error[/]: {message}", highlight=False)
        return typer.Exit(2)

    names = list(personas)
    if (script is None) == (topic is None):
        raise fail("give either --script FILE or --topic TEXT (with --turns N)")
    if layout not in ("side-by-side", "separate"):
        raise fail(f"--layout {layout!r}: use side-by-side or separate")
    if cascade_face not in ("teacher", "model"):
        raise fail(f"--cascade-face {cascade_face!r}: use teacher or model")
    if script is not None and not script.is_file():
        raise fail(f"no such script: {script}")
    settings = AppSettings()
    try:
        chosen = [load_persona(name, settings=settings) for name in names]
    except PersonaError as exc:
        raise fail(str(exc)) from None

    async def run() -> Any:
        models = SharedModels(settings)
        try:
            if script is not None:
                lines = read_script(script, [speaker_names(p, n) for p, n in zip(chosen, names, strict=True)])
                source: Any = ScriptedLines(lines)
            else:
                assert topic is not None
                source = await driven_lines(chosen, topic, turns, models, seed)
            return await run_dialogue(
                chosen, source, out, transcript, layout=layout, height=height,  # type: ignore[arg-type]
                cascade_face=cascade_face, seed=seed,  # type: ignore[arg-type]
                settings=settings, models=models,
            )  # fmt: skip
        finally:
            await models.aclose()

    try:
        result = asyncio.run(run())
    except (DialogueError, StackError, LocalServerError, MissingModelError, OSError) as exc:
        raise fail(f"cannot make the scene: {exc}") from None
    for line in result.lines:
        err.print(
            f"[{line['start']:7.2f}-{line['end']:7.2f}] {line['speaker']}: {line['text']}", highlight=False
        )
    err.print(f"wrote {', '.join(map(str, result.files))}" + (f" and {transcript}" if transcript else ""))
    summary = {
        "duration_s": result.duration_s,
        "wall_s": round(result.wall_s, 2),
        "speed": round(result.speed, 3),
        "lines": len(result.lines),
        **{k: v for k, v in result.metrics.items() if k != "avatars"},
    }
    print(json.dumps(_finite(summary)))


def register(app: typer.Typer) -> None:
    """Add ``dialogue`` to the top-level app."""
    app.command("dialogue")(dialogue)
