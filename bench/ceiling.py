"""The representation's ceiling per voice: Kokoro's speech through cheap WORLD variants, judged by Whisper.

    nice .venv/bin/python bench/ceiling.py [--limit 20] [--voices jf_alpha,jm_kumo] [--threads 2]

For each voice and each of the first ``--limit`` held-out sentences, Kokoro-82M speaks the sentence once
(cached under ``DYAD_CACHE_DIR/ceiling/``, so every candidate and every later run reuses it); each
candidate analyses that speech into WORLD features and resynthesises it (``features.resynthesize``);
Whisper tiny.en transcribes each result, and the corpus WER per voice and candidate is printed as JSON
lines and written to ``bench/results/ceiling.json``.

Candidates: ``kokoro`` (raw, the reference), ``world`` (as the model uses it now: DIO 60-500 Hz, 40
cepstral dims, FFT 1024), ``harvest`` (Harvest F0 instead of DIO), ``voice_range`` (DIO with an F0
floor and ceiling per voice, from Harvest's F0 of that voice's cached speech), ``cep60`` (60 cepstral
dims) and ``fft2048`` (a 2048-point FFT for the envelope and aperiodicity). ``--vocoder CHECKPOINT`` adds
``neural``: the model's features (as ``world``) turned into audio by a trained vocoder
(``dyad vocoder fit``) instead of ``pyworld``; a vocoder trained on log-mel inputs
(``configs/vocoder/mel.yaml``) reads the log-mel frames of the speech instead, which measures the ceiling
of a mel representation. ``--vocoder NAME=CHECKPOINT`` (repeatable) adds ``NAME``, so several vocoders
are judged on the same speech in one run. ``--candidates`` runs a subset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core.config import KOKORO_VOICES, AppSettings
from avatar_core.data import corpus
from avatar_core.eval.judge import spoken_wer, transcriber
from avatar_core.files import replacing
from avatar_core.speech import features
from avatar_core.speech.features import DEFAULT_OPTIONS, WorldOptions
from avatar_core.tts.kokoro import KokoroTTS
from avatar_core.vocoder.infer import NeuralVocoder

RESULTS = Path(__file__).parent / "results" / "ceiling.json"
CANDIDATES: dict[str, WorldOptions] = {
    "world": DEFAULT_OPTIONS,
    "harvest": replace(DEFAULT_OPTIONS, f0_method="harvest"),
    "cep60": replace(DEFAULT_OPTIONS, spectral_dim=60),
    "fft2048": replace(DEFAULT_OPTIONS, fft_size=2048),
}


def kokoro_audio(tts: KokoroTTS, cache: Path, text: str, voice: str) -> npt.NDArray[np.float32]:
    """Kokoro's speech for ``text`` in ``voice`` (S,) at 24 kHz, from the cache when it is there."""
    key = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:20]
    path = cache / voice / f"{key}.npy"
    if path.exists():
        cached: npt.NDArray[np.float32] = np.load(path)
        return cached
    audio = tts.synthesize_timed(text, voice).trim_lead().audio.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, ".npy") as tmp:
        np.save(tmp, audio)
    return audio


def voice_range(clips: list[npt.NDArray[np.float32]]) -> WorldOptions:
    """DIO bounded to this voice's F0: 0.7x its 2nd and 1.4x its 98th percentile (Harvest, 40-800 Hz)."""
    import pyworld

    f0 = np.concatenate(
        [pyworld.harvest(c.astype(np.float64), features.SAMPLE_RATE, 40.0, 800.0, 5.0)[0] for c in clips]
    )
    voiced = f0[f0 > 0]
    lo, hi = np.percentile(voiced, [2, 98])
    return replace(DEFAULT_OPTIONS, f0_floor=max(40, round(0.7 * float(lo))), f0_ceil=round(1.4 * float(hi)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=20, help="held-out sentences per voice")
    parser.add_argument("--voices", default=",".join(KOKORO_VOICES))
    parser.add_argument("--threads", type=int, default=2, help="Kokoro and Whisper threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--vocoder",
        action="append",
        default=[],
        help="a vocoder checkpoint (the 'neural' candidate) or NAME=CHECKPOINT; repeatable",
    )
    parser.add_argument("--candidates", default="", help="comma-separated subset to run (default: all)")
    args = parser.parse_args()
    paths: dict[str, Path] = {}
    for item in args.vocoder:
        name, _, path = item.partition("=") if "=" in item else ("neural", "", item)
        if not name or not path:
            parser.error(f"--vocoder {item!r}: use CHECKPOINT or NAME=CHECKPOINT")
        if name in paths or name in CANDIDATES or name in ("kokoro", "voice_range"):
            parser.error(f"--vocoder {item!r}: the name {name!r} is taken; choose another")
        paths[name] = Path(path)
    vocoders = {name: NeuralVocoder.load(path, threads=args.threads) for name, path in paths.items()}
    chosen = {c.strip() for c in args.candidates.split(",") if c.strip()}

    def render(
        clip: npt.NDArray[np.float32], name: str, options: WorldOptions | None
    ) -> npt.NDArray[np.float32]:
        if name in vocoders:
            vocoder = vocoders[name]
            return vocoder.synthesize(vocoder.analyze(clip))[: clip.size]
        return clip if options is None else features.resynthesize(clip, options)

    settings = AppSettings()
    sentences = corpus.split("heldout")[: args.limit]
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    cache = settings.cache_dir / "ceiling" / "kokoro"
    tts = KokoroTTS(settings.cache_dir, threads=args.threads)
    transcribe = transcriber(args.threads)
    start = time.perf_counter()
    rows = []
    for voice in voices:
        clips = [kokoro_audio(tts, cache, text, voice) for text in sentences]
        ranged = voice_range(clips) if not chosen or "voice_range" in chosen else None
        candidates: dict[str, WorldOptions | None] = {"kokoro": None, **CANDIDATES}
        if ranged is not None:
            candidates["voice_range"] = ranged
        candidates.update({name: DEFAULT_OPTIONS for name in vocoders})
        row: dict[str, object] = {"voice": voice, "sentences": len(sentences)}
        for name, options in candidates.items():
            if chosen and name not in chosen:
                continue
            heard = [transcribe(render(clip, name, options)) for clip in clips]
            row[name] = round(spoken_wer(sentences, heard), 4)
        if ranged is not None:
            row["voice_range_hz"] = [ranged.f0_floor, ranged.f0_ceil]
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "command": f"nice .venv/bin/python bench/ceiling.py --limit {args.limit} --voices {','.join(voices)}"
        + "".join(f" --vocoder {name}={path.name}" for name, path in paths.items())  # no machine's paths
        + (f" --candidates {args.candidates}" if chosen else ""),
        "judge": "Whisper tiny.en int8, greedy, English, no VAD",
        "candidates": {name: asdict(options) for name, options in CANDIDATES.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
        "wall_s": round(time.perf_counter() - start, 1),
        "voices": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"written": str(args.out), "wall_s": summary["wall_s"]}))


if __name__ == "__main__":
    main()
