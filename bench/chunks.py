"""The joint voice as the Speaker speaks a reply: cut into chunks, each synthesized on its own. Prints JSON.

    .venv/bin/python bench/chunks.py [--sentences 40] [--voices jm_kumo,jf_gongitsune] [--first 4,6]
        [--systems joint,cascade]

A live reply is spoken in chunks (``avatar_core.text.chunking.SentenceChunker``: a short first chunk for
latency, then sentences), and the voice makes each one without the words around it. For held-out sentences of
eight words or more, each voice speaks every sentence cut with a first chunk of at most N words (``--first``)
and whole, in one call; Whisper tiny.en judges the chunks played back to back. Both voices speak as the
Engine has them speak (``JointVoice``, ``CascadeVoice``): the joint model, and Kokoro, its teacher, in cascade
mode, so that what chunking itself costs a listener is told apart from what the joint model adds on short
texts. Reported per system, voice and cut: the WER and the first chunk's mean length in words. Written to
``bench/results/chunks.json`` with ``--out``.
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

from avatar_core.cascade import CascadeVoice
from avatar_core.config import AppSettings, BehaviourConfig, VoiceConfig
from avatar_core.data import corpus
from avatar_core.eval.judge import spoken_wer, transcriber
from avatar_core.joint import JointVoice
from avatar_core.model.inference import JointModel
from avatar_core.text.chunking import streamed_chunks
from avatar_core.tts.kokoro import KokoroTTS
from avatar_core.voice import Voice

MIN_WORDS = 8  # sentences long enough to be cut
FPS = 25.0  # the video rate the voices make motion at (the WER does not depend on it)


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
    parser.add_argument("--systems", default="joint,cascade", help="joint and/or cascade (Kokoro)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = [s for s in corpus.split("heldout") if len(s.split()) >= MIN_WORDS][: args.sentences]
    systems = args.systems.split(",")
    unknown = set(systems) - {"joint", "cascade"}
    if unknown:
        parser.error(f"unknown --systems {sorted(unknown)}: choose joint and/or cascade")
    settings = AppSettings()
    model = JointModel(None) if "joint" in systems else None
    kokoro = KokoroTTS(settings.cache_dir, threads=args.threads) if "cascade" in systems else None
    transcribe = transcriber(args.threads)
    cuts: list[int | None] = [*(int(n) for n in args.first.split(",")), None]
    # A piece shared by two cuts is made once.
    spoken: dict[tuple[str, str, str], npt.NDArray[np.float32]] = {}

    def voice(system: str, speaker: str) -> Voice:
        if system == "joint":
            config = VoiceConfig(mode="joint", speaker=speaker)
            assert model is not None
            return JointVoice(config, FPS, model)
        config = VoiceConfig(mode="cascade", speaker=speaker)
        return CascadeVoice(config, BehaviourConfig(), FPS, settings.cache_dir, tts=kokoro)

    def say(speaking: Voice, key: tuple[str, str], text: str) -> npt.NDArray[np.float32]:  # 24 kHz (S,)
        if (*key, text) not in spoken:
            spoken[*key, text] = speaking.utterance(text).audio.astype(np.float32) / 32768.0
        return spoken[*key, text]

    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for system in systems:
        results[system] = {}
        for speaker in args.voices.split(","):
            results[system][speaker] = {}
            speaking = voice(system, speaker)
            for cut in cuts:
                cut_pieces = [pieces(s, cut) for s in sentences]
                heard = [
                    transcribe(np.concatenate([say(speaking, (system, speaker), p) for p in ps]))
                    for ps in cut_pieces
                ]
                results[system][speaker]["whole" if cut is None else f"first <= {cut} words"] = {
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
