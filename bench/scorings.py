"""The joint model's WER scored two ways on the same transcripts: as dyad scores it, and the old way.

    nice -n -10 .venv/bin/python bench/scorings.py [--sentences 40] [--out bench/results/scorings.json]

The joint model, loaded as a live process loads it (``JointModel.from_settings``), speaks the first
``--sentences`` held-out sentences in each of its voices; Whisper tiny.en transcribes each once, and the
corpus WER per voice is scored both ways: ``numbers_alike`` (``spoken_wer``: numbers read the same however
Whisper writes them, docs/design.md "Evaluation") and ``spoken_form_alone`` (both sides spelled out by
``normalize`` and compared word for word, as every WER before 2026-12-05 was). Prints JSON lines, then the
means, and writes all of it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np

from avatar_core.config import AppSettings
from avatar_core.data import corpus
from avatar_core.eval.judge import spoken_wer, transcriber
from avatar_core.eval.metrics import word_error_rate
from avatar_core.model.inference import JointModel
from avatar_core.text.normalize import normalize

RESULTS = Path(__file__).parent / "results" / "scorings.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sentences", type=int, default=40, help="held-out sentences per voice")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    start = time.perf_counter()
    sentences = corpus.split("heldout")[: args.sentences]
    model = JointModel.from_settings(AppSettings())
    transcribe = transcriber()
    rows = []
    for voice in model.voices:
        heard = [transcribe(model.generate(text, voice).audio) for text in sentences]
        row = {
            "voice": voice,
            "numbers_alike": round(spoken_wer(sentences, heard), 4),
            "spoken_form_alone": round(
                word_error_rate([normalize(s) for s in sentences], [normalize(h) for h in heard]), 4
            ),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    ways = ("numbers_alike", "spoken_form_alone")
    means = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in ways}
    print(json.dumps({"mean": means}))
    summary = {
        "command": f"bench/scorings.py --sentences {args.sentences}",
        "date": date.today().isoformat(),
        "checkpoint": model.path.name,
        "sentences": len(sentences),
        "voices": rows,
        "mean": means,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
