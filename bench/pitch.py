"""Whether ``voice.pitch_semitones`` comes out at the asked pitch: the F0 of shifted speech. Prints JSON.

    nice .venv/bin/python -m bench.pitch --vocoder CHECKPOINT [--checkpoint JOINT] [--sentences 4]
        [--voices jf_alpha,jm_kumo] [--semitones=-4,-2,-1,1,2,4] [--out FILE]

Without ``--checkpoint``: Kokoro's speech of the first ``--sentences`` held-out sentences (cached as
``bench/ceiling.py`` caches it) is analysed into the vocoder's features, shifted by each interval
(``SpeechLayout.shift_pitch``, as a persona's pitch is) and vocoded. With ``--checkpoint``: the joint model
speaks each sentence at each interval with that vocoder (``JointModel.generate(pitch_semitones=...)``).
The F0 of every result is tracked by pyworld's Harvest; each row gives, per voice and interval, the median
over sentences of the shift heard against the unshifted speech (12 log2 of the ratio of median voiced F0)
and the share of voiced frames (a shift that breaks the voice loses it).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core.config import AppSettings
from avatar_core.data import corpus
from avatar_core.speech.features import SAMPLE_RATE
from avatar_core.tts.kokoro import KokoroTTS
from avatar_core.vocoder.infer import NeuralVocoder
from bench.ceiling import kokoro_audio


def pitch(audio: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Median F0 in Hz over voiced frames and the voiced share of 24 kHz speech (S,)."""
    with warnings.catch_warnings():  # pyworld 0.3.x imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld

    f0, _ = pyworld.harvest(audio.astype(np.float64), SAMPLE_RATE, f0_floor=60.0, f0_ceil=700.0)
    voiced = f0 > 0
    return (float(np.median(f0[voiced])) if voiced.any() else 0.0), float(voiced.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--vocoder", type=Path, required=True, help="a neural vocoder checkpoint")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a joint model that the vocoder speaks")
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--voices", default="jf_alpha,jm_kumo")
    parser.add_argument("--semitones", default="-4,-2,-1,1,2,4")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows here (JSON)")
    args = parser.parse_args()
    shifts = [float(s) for s in args.semitones.split(",")]
    vocoder = NeuralVocoder.load(args.vocoder, threads=1)
    settings = AppSettings()
    sentences = corpus.split("heldout")[: args.sentences]
    model = None
    if args.checkpoint is not None:
        from avatar_core.model.inference import JointModel

        model = JointModel(args.checkpoint, threads=1, vocoder=vocoder)
    tts = KokoroTTS(settings.cache_dir)
    layout = vocoder.model.config

    def speak(text: str, voice: str, semitones: float) -> npt.NDArray[np.float32]:
        """The joint model's speech, or Kokoro's through the vocoder, ``semitones`` higher."""
        if model is not None:
            return model.generate(text, voice, pitch_semitones=semitones).audio
        feats = vocoder.analyze(kokoro_audio(tts, settings.cache_dir / "ceiling" / "kokoro", text, voice))
        return vocoder.synthesize(layout.shift_pitch(layout.inputs, feats, semitones))

    rows = []
    for voice in args.voices.split(","):
        heard: dict[float, list[float]] = {s: [] for s in shifts}
        voiced: dict[float, list[float]] = {s: [] for s in [0.0, *shifts]}
        for text in sentences:
            base, share = pitch(speak(text, voice, 0.0))
            voiced[0.0].append(share)
            for s in shifts:
                f0, share = pitch(speak(text, voice, s))
                heard[s].append(12.0 * float(np.log2(f0 / base)) if f0 > 0 else float("nan"))
                voiced[s].append(share)
        row = {
            "voice": voice,
            "source": "joint model" if args.checkpoint else "kokoro",
            "heard_semitones": {str(s): round(float(np.median(heard[s])), 2) for s in shifts},
            "voiced_share": {str(s): round(float(np.mean(v)), 2) for s, v in voiced.items()},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        command = f"python -m bench.pitch --vocoder {args.vocoder.name} --sentences {args.sentences}"
        command += f" --voices {args.voices} --semitones={args.semitones}"
        if args.checkpoint is not None:
            command += f" --checkpoint {args.checkpoint.name}"
        args.out.write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
