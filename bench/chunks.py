"""The joint voice as the Speaker speaks a reply: cut into chunks, each synthesized on its own. Prints JSON.

    .venv/bin/python bench/chunks.py [--sentences 40] [--voices jm_kumo,jf_gongitsune] [--first 4,6]

A live reply is spoken in chunks (``avatar_core.text.chunking.SentenceChunker``: a short first chunk for
latency, then sentences), and the joint model makes each one without the words around it. For held-out
sentences of eight words or more, each voice speaks every sentence cut with a first chunk of at most N words
(``--first``) and whole, in one call; Whisper tiny.en judges the chunks played back to back. Reported per
voice and cut: the WER and the first chunk's mean length in words. Written to ``bench/results/chunks.json``
with ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).parent))

from latency import command_line, emit

from avatar_core.data import corpus
from avatar_core.eval.judge import spoken_wer, transcriber
from avatar_core.model.inference import JointModel
from avatar_core.text.chunking import streamed_chunks

MIN_WORDS = 8  # sentences long enough to be cut


def pieces(text: str, first_max_words: int | None) -> list[str]:
    """``text`` as the Speaker cuts it streamed from the LLM, with a first chunk of at most
    ``first_max_words`` (None: whole)."""
    return [text] if first_max_words is None else streamed_chunks(text, first_max_words)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--voices", default="jm_kumo,jf_gongitsune")
    parser.add_argument("--first", default="4,6", help="first-chunk word limits to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = [s for s in corpus.split("heldout") if len(s.split()) >= MIN_WORDS][: args.sentences]
    model = JointModel(None)
    transcribe = transcriber(args.threads)
    cuts: list[int | None] = [*(int(n) for n in args.first.split(",")), None]
    spoken: dict[tuple[str, str], npt.NDArray[np.float32]] = {}  # a piece shared by two cuts is made once

    def say(text: str, voice: str) -> npt.NDArray[np.float32]:
        if (voice, text) not in spoken:
            spoken[voice, text] = model.generate(text, voice).audio
        return spoken[voice, text]

    results: dict[str, dict[str, dict[str, float]]] = {}
    for voice in args.voices.split(","):
        results[voice] = {}
        for cut in cuts:
            cut_pieces = [pieces(s, cut) for s in sentences]
            heard = [transcribe(np.concatenate([say(p, voice) for p in ps])) for ps in cut_pieces]
            results[voice]["whole" if cut is None else f"first <= {cut} words"] = {
                "wer": round(spoken_wer(sentences, heard), 4),
                "first_chunk_words": round(float(np.mean([len(ps[0].split()) for ps in cut_pieces])), 2),
            }
    result = {
        "bench": "chunks",
        "command": command_line("bench/chunks.py"),
        "date": date.today().isoformat(),
        "judge": "Whisper tiny.en int8, the chunks played back to back",
        "sentences": len(sentences),
        "results": results,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
