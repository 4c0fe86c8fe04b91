"""Contact sheet of a `dyad dialogue` scene -> docs/img/dialogue.png.

Makes the example scene (examples/dialogue_reception.yaml) unless given one, then lays out frames taken
through it, each labelled with its time and who is speaking:

    .venv/bin/python scripts/dialogue_sheet.py
    .venv/bin/python scripts/dialogue_sheet.py --video scene.mp4 --transcript scene.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "dialogue.png"
EXAMPLE = ROOT / "examples" / "dialogue_reception.yaml"
PERSONAS = ("library_receptionist", "default")


def make_scene(folder: Path) -> tuple[Path, Path]:
    """Run `dyad dialogue` on the example script; the MP4 and the transcript."""
    video, transcript = folder / "scene.mp4", folder / "scene.json"
    command = [sys.executable, "-m", "integrations.cli.main", "dialogue", "--personas", *PERSONAS]
    command += ["--script", str(EXAMPLE), "--out", str(video), "--transcript", str(transcript)]
    subprocess.run(command, check=True, cwd=ROOT)
    return video, transcript


def speaker_at(lines: list[dict[str, object]], t: float) -> str:
    """Who is audibly speaking at ``t`` ("" for nobody)."""
    for line in lines:
        if float(str(line["speech_start"])) <= t <= float(str(line["speech_end"])):
            return str(line["speaker"])
    return ""


def sheet(video: Path, transcript: Path, columns: int = 4, rows: int = 3, height: int = 200) -> np.ndarray:
    """Frames at evenly spaced times (RGB), labelled "t s: NAME speaks"."""
    lines = json.loads(transcript.read_text())["lines"]
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    count = columns * rows
    picks = np.linspace(0.1 * len(images), 0.95 * len(images), count).astype(int)
    tiles = []
    for k in picks:
        image = images[k]
        width = round(image.shape[1] * height / image.shape[0])
        tile = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        band = np.full((26, width, 3), 255, np.uint8)
        who = speaker_at(lines, k / rate)
        label = f"{k / rate:5.1f} s  " + (f"{who} speaks" if who else "pause")
        cv2.putText(band, label, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, band]))
    grid = [np.hstack(tiles[r * columns : (r + 1) * columns]) for r in range(rows)]
    return np.vstack(grid)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, help="a scene's MP4 (default: make the example scene)")
    parser.add_argument("--transcript", type=Path, help="its transcript JSON")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.video is None:
            video, transcript = make_scene(Path(folder))
        elif args.transcript is None:
            parser.error("--video needs --transcript")
        else:
            video, transcript = args.video, args.transcript
        image = sheet(video, transcript)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    print(args.out)


if __name__ == "__main__":
    main()
