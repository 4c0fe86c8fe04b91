"""Joint-model speed against Kokoro in the same run: real-time factor and first-chunk latency. Prints JSON.

    .venv/bin/python bench/joint.py [--sentences 20] [--steps 8] [--threads 2] [--checkpoint PATH]
        [--vocoder neural|world] [--vocoder-checkpoint PATH]

For each held-out sentence: the joint model (network + vocoder) and Kokoro-82M synthesize it; the
first chunk the Engine would synthesize (SentenceChunker) is timed separately. One JSON line per system
and one summary line with the speed-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from avatar_core.config import AppSettings
from avatar_core.data import corpus
from avatar_core.model.config import EULER_STEPS
from avatar_core.model.inference import JointModel
from avatar_core.text.chunking import streamed_first_chunk
from avatar_core.tts.kokoro import KokoroTTS
from avatar_core.vocoder.infer import VOCODERS, load_speech_vocoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--steps", type=int, default=EULER_STEPS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--vocoder", choices=VOCODERS, default="neural")
    parser.add_argument(
        "--vocoder-checkpoint", type=Path, default=None, help="a neural vocoder for the model's features"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = corpus.split("heldout")[: args.sentences]
    settings = AppSettings()
    model = JointModel(
        args.checkpoint,
        steps=args.steps,
        vocoder=load_speech_vocoder(args.vocoder, args.vocoder_checkpoint)
        if args.vocoder_checkpoint
        else args.vocoder,
        onednn=settings.torch_onednn,  # as a live process runs it (DYAD_TORCH_ONEDNN)
    )
    tts = KokoroTTS(settings.cache_dir, threads=args.threads)
    model.generate("Hello.")
    tts.synthesize("Hello.")
    joint_s = joint_audio = model_s = vocoder_s = kokoro_s = kokoro_audio = 0.0
    firsts: list[float] = []
    for text in sentences:
        start = time.perf_counter()
        out = model.generate(text)
        joint_s += time.perf_counter() - start
        joint_audio += out.duration_s
        model_s += out.model_s
        vocoder_s += out.vocoder_s
        start = time.perf_counter()
        model.generate(streamed_first_chunk(text))
        firsts.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        audio = tts.synthesize(text)
        kokoro_s += time.perf_counter() - start
        kokoro_audio += audio.size / 24_000
    machine = {"cpu": platform.processor() or platform.machine(), "threads": args.threads}
    joint_rtf, kokoro_rtf = joint_s / joint_audio, kokoro_s / kokoro_audio
    print(json.dumps({
        "system": "joint", "rtf": round(joint_rtf, 4), "network_rtf": round(model_s / joint_audio, 4),
        "vocoder_rtf": round(vocoder_s / joint_audio, 4), "audio_s": round(joint_audio, 1),
        "first_chunk_ms_p50": round(float(np.median(firsts)), 1),
        "first_chunk_ms_p95": round(float(np.percentile(firsts, 95)), 1), "steps": args.steps,
        "vocoder": args.vocoder, "onednn": settings.torch_onednn, **machine,
    }))  # fmt: skip
    print(
        json.dumps(
            {"system": "kokoro", "rtf": round(kokoro_rtf, 4), "audio_s": round(kokoro_audio, 1), **machine}
        )
    )
    print(json.dumps({"speedup_vs_kokoro": round(kokoro_rtf / joint_rtf, 2), "sentences": len(sentences)}))


if __name__ == "__main__":
    main()
