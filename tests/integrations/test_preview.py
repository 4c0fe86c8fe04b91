"""`dyad persona preview`: a real MP4 that decodes, has the right length and shows a moving face."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from typer.testing import CliRunner

from integrations.cli.main import app


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_preview_writes_a_decodable_changing_clip(tmp_path: Path) -> None:
    out = tmp_path / "preview.mp4"
    result = CliRunner().invoke(app, ["persona", "preview", "library_receptionist", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frames = decode(out)
    assert len(frames) == 6 * 25
    assert frames[0].shape == (512, 512, 3)
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[10:], strict=False)]
    assert min(diffs) > 0.05  # the face never freezes for 10 frames
    mouth_open = frames[int(0.5 * 25)]  # during the viseme tour
    assert np.abs(mouth_open.astype(int) - frames[0].astype(int)).max() > 40


def test_preview_of_a_portrait_persona(tmp_path: Path) -> None:
    import cv2
    from skimage.data import astronaut

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    persona = tmp_path / "eileen.yaml"
    persona.write_text(
        "identity: {display_name: Eileen, livekit_identity: eileen}\n"
        "llm: {system_prompt: p, greeting: g, fallback_line: f}\n"
        "appearance: {renderer: portrait, portrait: astronaut.png,"
        " video: {width: 256, height: 256, fps: 20}}\n"
    )
    out = tmp_path / "p.mp4"
    result = CliRunner().invoke(
        app, ["persona", "preview", str(persona), "--out", str(out), "--seconds", "3"]
    )
    assert result.exit_code == 0, result.output
    frames = decode(out)
    assert len(frames) == 60 and frames[0].shape == (256, 256, 3)


def test_preview_of_a_photo_without_a_face_is_a_clear_error(tmp_path: Path) -> None:
    import cv2

    photo = tmp_path / "wall.png"
    cv2.imwrite(str(photo), np.full((300, 300, 3), 128, np.uint8))
    persona = tmp_path / "nobody.yaml"
    persona.write_text(
        "identity: {display_name: N, livekit_identity: n}\n"
        "llm: {system_prompt: p, greeting: g, fallback_line: f}\n"
        "appearance: {renderer: portrait, portrait: wall.png}\n"
    )
    result = CliRunner().invoke(app, ["persona", "preview", str(persona), "--out", str(tmp_path / "x.mp4")])
    assert result.exit_code == 2
    assert "face" in result.output and "Traceback" not in result.output
