"""The joint model's own speech through each vocoder, judged by Whisper. Prints JSON lines.

    nice .venv/bin/python bench/vocoders.py [--sentences 40] [--checkpoint PATH] [--voices V,...]
        [--vocoder NAME=CHECKPOINT ...] [--skip world] [--temperatures 1.0,0.4] [--steps 8,6]
        [--durations model,teacher] [--out FILE]

For each of the first ``--sentences`` held-out sentences the joint model generates speech features once
per speech temperature and number of Euler steps (default: the temperature and steps dyad speaks with); each
vocoder that reads them (for a WORLD model ``world``: pyworld; ``neural``: the bundled network for the
model's features, where the package has one; plus any ``--vocoder NAME=CHECKPOINT``, the first of which
the model is loaded with) turns them into audio, and Whisper tiny.en's corpus WER per voice and vocoder
is printed, with the spread of the spoken F0 (WORLD's analysis of the first vocoder's audio: standard
deviation over voiced frames, semitones, mean over sentences: how much prosody the temperature leaves).
This is what a person hears, where ``bench/ceiling.py`` vocodes the teacher's features.

``--durations teacher`` holds each phoneme for as long as Kokoro held it in the same sentence and voice (its
own duration output, as the training data records it, its leading and closing pads included) instead of the
model's predicted durations: the difference between the two rows is what the predicted timing costs, the
rest of the gap to the ceiling is the speech tower's.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from avatar_core.config import AppSettings
from avatar_core.data import corpus
from avatar_core.data.teacher import phoneme_timing
from avatar_core.eval.judge import spoken_wer, transcriber
from avatar_core.model.config import EULER_STEPS
from avatar_core.model.inference import SPEECH_TEMPERATURE, JointModel
from avatar_core.speech import features
from avatar_core.tts.kokoro import KokoroTTS
from avatar_core.vocoder.infer import NeuralVocoder, SpeechVocoder, WorldVocoder, bundled_vocoder


def f0_spread(speech: np.ndarray) -> float:
    """Standard deviation of log F0 over the voiced frames of features (T, F), in semitones."""
    voiced = speech[:, features.VOICED] > 0.5
    if voiced.sum() < 2:
        return 0.0
    return float(np.std(speech[voiced, features.LF0]) * 12 / np.log(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled joint model")
    parser.add_argument("--voices", default="", help="comma-separated (default: the checkpoint's)")
    parser.add_argument("--vocoder", action="append", default=[], help="NAME=CHECKPOINT, more to compare")
    parser.add_argument("--skip", default="", help="comma-separated vocoders not to judge (world, neural)")
    parser.add_argument(
        "--temperatures", default=str(SPEECH_TEMPERATURE), help="comma-separated speech temperatures"
    )
    parser.add_argument("--steps", default=str(EULER_STEPS), help="comma-separated Euler steps")
    parser.add_argument(
        "--durations", default="model", help="comma-separated: model (predicted), teacher (Kokoro's own)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    args = parser.parse_args()
    timings = args.durations.split(",")
    if bad := [t for t in timings if t not in ("model", "teacher")]:
        parser.error(f"--durations {','.join(bad)}: use model, teacher or both")
    temperatures = [float(t) for t in args.temperatures.split(",")]
    step_counts = [int(n) for n in args.steps.split(",")]
    given: dict[str, SpeechVocoder] = {}
    for item in args.vocoder:
        name, _, path = item.partition("=")
        if not name or not path:
            parser.error(f"--vocoder {item!r}: use NAME=CHECKPOINT")
        given[name] = NeuralVocoder.load(Path(path))
    # oneDNN as a live process sets it (DYAD_TORCH_ONEDNN): its arithmetic flips a few of Whisper's words
    onednn = AppSettings().torch_onednn
    # a given vocoder must read what the model predicts (the model refuses one that does not)
    first = next(iter(given.values()), None)
    model = JointModel(args.checkpoint, threads=1, vocoder=first or "neural", onednn=onednn)
    kind = model.model.config.speech
    vocoders: dict[str, SpeechVocoder] = {"world": WorldVocoder()} if kind == "world" else {}
    if bundled_vocoder(kind).is_file():
        vocoders["neural"] = NeuralVocoder.load(bundled_vocoder(kind))
    vocoders.update(given)
    for name in filter(None, args.skip.split(",")):
        if vocoders.pop(name, None) is None:
            parser.error(f"--skip {name!r}: not one of {', '.join(vocoders)}")
    sentences = corpus.split("heldout")[: args.sentences]
    voices = args.voices.split(",") if args.voices else list(model.voices)
    transcribe = transcriber()
    # Kokoro's tokens and durations for each voice's sentences, made once for every temperature and step count
    teacher: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    if "teacher" in timings:
        kokoro = KokoroTTS(AppSettings().cache_dir)
        teacher = {v: [phoneme_timing(kokoro.synthesize_timed(t, v)) for t in sentences] for v in voices}
    rows = []
    for temperature, steps, timing, voice in itertools.product(temperatures, step_counts, timings, voices):
        model.temperature = temperature
        model.steps = steps
        if timing == "model":
            speech = [model.generate(text, voice).speech for text in sentences]  # (T, F) each
        else:
            speech = [
                model.speech_for(tokens, durations, voice, key=text)
                for text, (tokens, durations) in zip(sentences, teacher[voice], strict=True)
            ]
        row: dict[str, object] = {
            "voice": voice,
            "temperature": temperature,
            "steps": steps,
            "durations": timing,
            "sentences": len(sentences),
        }
        for k, (name, vocoder) in enumerate(vocoders.items()):
            audio = [vocoder.synthesize(f) for f in speech]
            if k == 0:  # the F0 of what the first vocoder says (WORLD's analysis, any features)
                spread = [f0_spread(features.analyze(a)) for a in audio]
                row["f0_spread_semitones"] = round(float(np.mean(spread)), 2)
            row[name] = round(spoken_wer(sentences, [transcribe(a) for a in audio]), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        command = "bench/vocoders.py " + " ".join(
            [f"--sentences {args.sentences}", f"--temperatures {args.temperatures}", f"--steps {args.steps}"]
            + [f"--durations {args.durations}"]
            + [f"--vocoder {v}" for v in args.vocoder]
            + ([f"--skip {args.skip}"] if args.skip else [])
        )
        args.out.write_text(json.dumps({"command": command, "voices": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
