"""Streaming voice activity detection: Silero VAD (ONNX) on 16 kHz audio, with silero's hysteresis.

The model runs directly on onnxruntime (one thread, no torch) one 512-sample window (32 ms) at a time,
exactly as silero's ``OnnxWrapper`` does: each call sees the previous window's last 64 samples as
context and carries a (2, 1, 128) recurrent state. Segmentation follows silero's
``get_speech_timestamps`` (with ``speech_pad_ms=0``): a window with probability >= ``threshold`` starts
or continues speech, one below ``threshold - 0.15`` counts as silence, anything in between keeps the
current state. Streaming forces two decisions that the offline function takes at the end:

* ``speech_start`` is emitted as soon as the segment is ``min_speech_ms`` long (shorter blips that fall
  silent for ``min_silence_ms`` are dropped without an event); its ``t`` is the segment's onset.
* ``speech_end`` is emitted once ``min_silence_ms`` of silence has been heard; its ``t`` is the end of
  the last speech window. (Offline silero waits one window longer, so ours equals silero's segments
  computed with ``min_silence_duration_ms = min_silence_ms - 32``.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from avatar_core.bundled import silero_vad_onnx
from avatar_core.listening_features import HEARD_PAUSE_MS

F32 = npt.NDArray[np.float32]

WINDOW = 512  # samples per model call at 16 kHz (32 ms), fixed by the model
CONTEXT = 64  # samples of the previous window the model sees in front of each window
NEG_OFFSET = 0.15  # silence threshold = threshold - this (silero's default neg_threshold)


@dataclass(frozen=True)
class VADEvent:
    """A confirmed change of the speaking state."""

    kind: Literal["speech_start", "speech_end"]
    t: float  # speech_start: when the speech began (onset); speech_end: when the speech stopped
    speech_s: float  # length of the speech so far (speech_end: total length)


class StreamingVAD:
    """Push 16 kHz float32 audio of any length; get ``speech_start``/``speech_end`` events back.

    Blocking (about 0.1-0.3 ms of CPU per 32 ms window): run ``push`` in a worker thread. ``push`` and
    ``reset`` are serialised by a lock; the public attributes are plain values that other threads may read.
    """

    SAMPLE_RATE = 16_000

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_ms: int = 250,
        min_silence_ms: int = 500,
        model_path: Path | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        if min_speech_ms < 0 or min_silence_ms < 0:
            raise ValueError(
                f"min_speech_ms and min_silence_ms must be >= 0, got {min_speech_ms} and {min_silence_ms}"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread each: a window is tiny, and thread hand-offs would cost more than they save while
        # the renderer and the TTS compete for the two cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        path = model_path if model_path is not None else silero_vad_onnx()
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.threshold = float(threshold)
        self.neg_threshold = max(self.threshold - NEG_OFFSET, 0.01)  # as silero
        self.min_speech_s = min_speech_ms / 1000.0
        self.min_silence_s = min_silence_ms / 1000.0
        self._window_s = WINDOW / self.SAMPLE_RATE
        self._sr = np.array(self.SAMPLE_RATE, dtype=np.int64)  # () scalar, as the model wants
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget all audio and state (a new stream)."""
        with self._lock:
            self._state: F32 = np.zeros((2, 1, 128), np.float32)  # the model's recurrent state
            self._input: F32 = np.zeros((1, CONTEXT + WINDOW), np.float32)  # context + window
            self._pending: F32 = np.zeros(0, np.float32)  # (P,) samples short of a full window
            self.probability = 0.0
            self.speaking = False
            self.run_s = 0.0
            self._in_run = False  # inside a hysteresis run (the source of ``run_s``)
            self._triggered = False  # inside a segment, confirmed or not (silero's ``triggered``)
            self._onset = 0.0  # the segment's first speech window
            self._silence_from: float | None = None  # end of the last speech window while silent
            self._speech_until = 0.0  # end of the segment's latest non-silent window

    def push(self, samples: F32, t: float) -> list[VADEvent]:
        """Feed mono float32 samples (N,) at 16 kHz; ``t`` is the time of ``samples[0]``.

        Returns the events that the completed windows produced, in order.
        """
        if not isinstance(samples, np.ndarray):
            raise ValueError(
                f"samples must be a numpy array, got {type(samples).__name__}; "
                "use np.asarray(samples, dtype=np.float32)"
            )
        if samples.dtype != np.float32:
            hint = " (int16 PCM: samples.astype(np.float32) / 32768)" if samples.dtype == np.int16 else ""
            raise ValueError(
                f"samples must be float32 in [-1, 1], got {samples.dtype}; "
                f"convert with samples.astype(np.float32){hint}"
            )
        if samples.ndim != 1:
            raise ValueError(
                f"samples must be mono 1-D (N,), got shape {samples.shape}; "
                "mix channels down first, e.g. samples.mean(axis=1) for (N, channels)"
            )
        if not np.isfinite(samples).all():
            raise ValueError("samples contain NaN or infinity; replace them, e.g. np.nan_to_num(samples)")
        events: list[VADEvent] = []
        with self._lock:
            if samples.size == 0:
                return events
            buffer = np.concatenate([self._pending, samples]) if self._pending.size else samples  # (P+N,)
            start_t = t - self._pending.size / self.SAMPLE_RATE  # time of buffer[0]
            full = buffer.size // WINDOW
            for i in range(full):
                window = buffer[i * WINDOW : (i + 1) * WINDOW]  # (512,)
                prob = self._infer(window)
                t0 = start_t + i * self._window_s
                self._step(prob, t0, t0 + self._window_s, events)
            self._pending = buffer[full * WINDOW :].copy()
        return events

    def _infer(self, window: F32) -> float:
        """One model call on a (512,) window; updates the state and the context like OnnxWrapper."""
        self._input[0, CONTEXT:] = window
        prob, state = self.session.run(None, {"input": self._input, "state": self._state, "sr": self._sr})
        self._state = np.asarray(state, np.float32)
        # The next window's context is this window's tail.
        self._input[0, :CONTEXT] = self._input[0, -CONTEXT:]
        self.probability = float(np.asarray(prob).reshape(-1)[0])
        return self.probability

    def _step(self, prob: float, t0: float, t1: float, events: list[VADEvent]) -> None:
        """Advance the segmentation by one window spanning [t0, t1)."""
        speech = prob >= self.threshold
        silence = prob < self.neg_threshold

        # run_s: an uninterrupted run with the same hysteresis, for callers that react before confirmation.
        if speech or (self._in_run and not silence):
            self.run_s = self.run_s + self._window_s if self._in_run else self._window_s
            self._in_run = True
        else:
            self._in_run = False
            self.run_s = 0.0

        if not self._triggered:
            if speech:
                self._triggered = True
                self._onset = t0
                self._silence_from = None
                self._speech_until = t1
                self._confirm(events)
            return

        if speech:
            self._silence_from = None  # speech is back: the silence so far did not end the segment
        if silence:
            if self._silence_from is None:
                self._silence_from = t0
            if t1 - self._silence_from >= self.min_silence_s - 1e-9:
                if self.speaking:
                    length = self._silence_from - self._onset
                    events.append(VADEvent("speech_end", self._silence_from, length))
                self._triggered = False
                self.speaking = False
                self._silence_from = None
            return
        if self._silence_from is None:
            # A window between the thresholds outside a silence stretch continues the speech (as silero).
            self._speech_until = t1
            self._confirm(events)

    def _confirm(self, events: list[VADEvent]) -> None:
        """Emit speech_start once the pending segment is min_speech_ms long."""
        length = self._speech_until - self._onset
        if not self.speaking and length >= self.min_speech_s - 1e-9:
            self.speaking = True
            events.append(VADEvent("speech_start", self._onset, length))


class HeardVoice:
    """Whether a voice is audible now, as a listener hears it: Silero on the stream, with only a
    ``HEARD_PAUSE_MS`` hangover, so the listener hears the short pauses that turn-taking (with its
    longer end-of-turn silence) does not. Blocking like :class:`StreamingVAD`.
    """

    def __init__(self, threshold: float = 0.5, min_speech_ms: int = 250) -> None:
        self.vad = StreamingVAD(threshold, min_speech_ms, HEARD_PAUSE_MS)

    def push(self, samples: F32, t: float) -> bool:
        """Feed 16 kHz mono samples (N,) starting at ``t``; True while a voice is heard at their end."""
        self.vad.push(samples, t)
        return self.vad.speaking or self.vad.run_s > 0
