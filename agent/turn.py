"""Semantic end of turn: Smart Turn v3.2 decides how long a pause has to last before the user's turn is over.

Silence alone cannot tell "I'd like to book ... an appointment" from "I'd like to book an appointment.":
both stop for a moment. Smart Turn v3.2 (Pipecat's open end-of-turn model, BSD-2-Clause, a Whisper-tiny
encoder with a classifier head, ONNX) hears the words *and* the intonation of the turn so far and returns
the probability that it is complete. The model file ships inside the ``pipecat-ai`` wheel; only that file
is used (pipecat's own Python code needs dependencies that clash with livekit's), with the preprocessing
pipecat 1.14.0 applies (``LocalSmartTurnAnalyzerV3._predict_endpoint``):

* the turn's audio at 16 kHz, from 0.5 s before its first speech, cut to its last 8 s or zero-padded in
  front to 8 s (128,000 samples);
* zero-mean, unit-variance normalisation of those 8 s (float32, variance + 1e-7);
* Whisper's log-mel spectrogram, as ``transformers.WhisperFeatureExtractor`` computes it (pipecat vendors
  a numpy copy): centred 400-point periodic Hann frames every 160 samples, power spectrum in float64,
  80 Slaney mel bands over 0-8 kHz, log10 floored at 1e-10, the last frame dropped, clamped to
  (max - 8), then (x + 4) / 4 -> (80, 800) float32. The model's output moves by a few hundredths when
  its input changes in the last bits (faster-whisper's float32 extractor is that close, and not
  close enough), so the order of operations here is the reference's, and the tests compare the two
  bit for bit.

The decision rule: once the user has been silent for ``min_wait_ms`` the model is asked once; its
probability p picks the silence that ends the turn, from ``min_wait_ms`` (p = 1) to ``max_wait_ms``
(p = 0), geometrically (see :func:`silence_for`). If the user speaks again first, nothing ends. Without the
model (``turn_detector: silence``, or pipecat-ai not installed) ``end_of_turn_silence_ms`` ends the turn.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.persona import TurnTakingConfig
from agent.turn_text import vetoes, words_only
from avatar_core.bundled import MissingModelError
from avatar_core.workers import compute_pool

F32 = npt.NDArray[np.float32]
log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # the model hears the last 8 s of the turn
PRE_SPEECH_S = 0.5  # audio kept in front of the turn's first speech, as pipecat keeps
NORM_EPS = 1e-7  # added to the variance before normalising, as Whisper's feature extractor does
N_MELS = 80
N_FFT = 400  # 25 ms analysis window
HOP = 160  # 10 ms between frames

PIPECAT_VERSION = "1.14.0"
PIPECAT_INSTALL = f"pip install --no-deps pipecat-ai=={PIPECAT_VERSION}"
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"  # inside site-packages


# ---------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------


def smart_turn_onnx() -> Path:
    """The Smart Turn v3.2 ONNX file inside the installed ``pipecat-ai`` package, found without importing
    pipecat (its ``__init__`` needs packages dyad does not install)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(
            "Smart Turn v3.2 (the end-of-turn model) is not installed: it ships inside the pipecat-ai "
            f"package. Fix: {PIPECAT_INSTALL} (without its dependencies: its protobuf pin clashes with "
            "livekit's), or set turn_taking.turn_detector: silence"
        )
    path = Path(next(iter(spec.submodule_search_locations))).parent / MODEL_FILE
    if not path.is_file():
        raise MissingModelError(
            f"Smart Turn v3.2: {path} is missing (pipecat-ai is not version {PIPECAT_VERSION}, or is "
            f"damaged). Fix: {PIPECAT_INSTALL} --force-reinstall"
        )
    return path


def turn_window(audio: F32) -> F32:
    """The model's 8 s window (128000,): the last 8 s of ``audio``, or ``audio`` zero-padded in front."""
    if audio.size >= WINDOW_SAMPLES:
        return np.ascontiguousarray(audio[-WINDOW_SAMPLES:], dtype=np.float32)
    window = np.zeros(WINDOW_SAMPLES, np.float32)
    window[WINDOW_SAMPLES - audio.size :] = audio
    return window


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    mel = 3.0 * hz / 200.0
    log_region = hz >= 1000.0
    mel[log_region] = 15.0 + np.log(hz[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    hz = 200.0 * mel / 3.0
    log_region = mel >= 15.0
    hz[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_region] - 15.0))
    return hz


@functools.cache
def _mel_filters() -> npt.NDArray[np.float64]:
    """Slaney-normalised triangular mel filters over 0-8 kHz, (201, 80), in the reference's float64 order
    of operations (the model notices differences in the last bits)."""
    low, high = _hz_to_mel(np.array([0.0, SAMPLE_RATE / 2.0]))
    edges = _mel_to_hz(np.linspace(float(low), float(high), N_MELS + 2))  # (82,) band edges in Hz
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)  # (201,) FFT bin frequencies
    slopes = edges[None, :] - bins[:, None]  # (201, 82)
    down = -slopes[:, :-2] / np.diff(edges)[:-1]
    up = slopes[:, 2:] / np.diff(edges)[1:]
    filters = np.maximum(np.zeros(1), np.minimum(down, up))  # (201, 80)
    filters *= (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[None, :]
    return filters


def features(audio: F32) -> F32:
    """A turn's 16 kHz mono audio (S,) -> the model's input, Whisper log-mel of its last 8 s (80, 800)."""
    x = turn_window(audio)  # (128000,)
    x = (x - x.mean()) / np.sqrt(x.var() + NORM_EPS)  # in float32, as the reference normalises
    padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")  # centred frames
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]  # (801, 400)
    window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # (801, 201)
    mel = np.maximum(1e-10, _mel_filters().T @ power.T)  # (80, 801)
    log_mel = np.log10(mel)[:, :-1]  # (80, 800): Whisper drops the last frame
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return np.asarray((log_mel + 4.0) / 4.0, dtype=np.float32)


class SmartTurnModel:
    """Smart Turn v3.2 on onnxruntime. ``predict`` is blocking and thread-safe; one model may serve many
    sessions (each :class:`TurnDetector` runs it on its own worker thread)."""

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: a call is short, and the renderer, TTS and STT compete for the same cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.path = model_path if model_path is not None else smart_turn_onnx()
        self.session = ort.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, audio: F32) -> float:
        """Probability that the turn in ``audio`` (16 kHz mono float32 (S,), trailing silence included)
        is complete."""
        inputs = features(audio)[None]  # (1, 80, 800)
        (probability,) = self.session.run(None, {"input_features": inputs})  # (1, 1), already a sigmoid
        return float(np.asarray(probability).reshape(-1)[0])


# ---------------------------------------------------------------------------------------------------
# The decision rule
# ---------------------------------------------------------------------------------------------------


def silence_for(probability: float, min_wait_s: float, max_wait_s: float) -> float:
    """Silence (from the end of speech) that ends the turn, given the model's probability that it is
    complete: ``min_wait_s`` at p = 1, ``max_wait_s`` at p = 0, geometric in between (each step of p
    scales the wait by the same factor, so p = 0.9 stays close to the minimum and p = 0.1 close to the
    maximum). Monotonically non-increasing in p and always within [min_wait_s, max_wait_s]."""
    if not 0.0 < min_wait_s < max_wait_s:
        raise ValueError(f"need 0 < min_wait_s < max_wait_s, got {min_wait_s} and {max_wait_s}")
    p = min(max(float(probability), 0.0), 1.0) if np.isfinite(probability) else 0.0
    return float(min(max(min_wait_s * (max_wait_s / min_wait_s) ** (1.0 - p), min_wait_s), max_wait_s))


@dataclass(frozen=True)
class TurnDecision:
    """What a pause means: the silence (seconds from the end of speech) after which the turn is over."""

    silence_s: float
    probability: float | None  # None: decided by silence alone
    inference_s: float  # the model call's wall time (features included); 0 without the model


def pause_ends_turn(
    config: TurnTakingConfig,
    silent_for_s: float,
    audio: TurnDecision | None,
    words: tuple[str, float] | None,
    *,
    words_pending: bool,
) -> bool:
    """Whether a pause that has lasted ``silent_for_s`` ends the user's turn, given what is known so far.

    ``audio``: the turn detector's decision (None while Smart Turn runs); ``words``: the transcript up to
    the pause and the probability that it ends a sentence (agent/turn_text.py), None without a verdict;
    ``words_pending``: a verdict is still being made (recognition or the text model running). In order:

    * words heard but none made out (the transcript is empty: a name Whisper cannot read, a cough) hold
      it ``max_wait_ms``: nothing can be answered yet, and the user may be about to go on ("Ada, ...");
    * words that do not end a sentence (``text_veto_below``) hold the turn ``veto_wait_ms``, or only
      ``max_wait_ms`` when Smart Turn is sure it is over (``trust_smart_turn_above``): the two disagree,
      and a question that could go on ("how long can I keep a book") is then seldom a pause;
    * words that surely end one (``text_complete_above``) end it at once (after ``min_wait_ms``);
    * otherwise the audio decides, but not before the words' verdict, which is waited for up to
      ``max_wait_ms``, or, when Smart Turn is sure, up to ``min_wait_ms`` longer than the audio's own wait
      (on a busy machine recognition and the text model can take most of a second: a sure ear is not
      kept waiting that long); without the check, or when recognition failed, the audio alone;
    * Smart Turn not answered yet counts as unsure (``max_wait_ms``). The audio's own wait is never cut
      short but by the words (``end_of_turn_silence_ms`` may be longer than ``veto_wait_ms``).
    """
    min_s, max_s = config.min_wait_ms / 1000.0, config.max_wait_ms / 1000.0
    audio_s = audio.silence_s if audio is not None else max_s
    sure = (
        audio is not None
        and audio.probability is not None
        and audio.probability >= config.trust_smart_turn_above
    )
    if words is not None and not words_only(words[0]):
        return silent_for_s >= max(audio_s, max_s)
    if words is not None:
        text, probability = words
        if vetoes(text, probability, config.text_veto_below):
            return silent_for_s >= max(audio_s, max_s if sure else config.veto_wait_ms / 1000.0)
        if probability >= config.text_complete_above:  # empty words were held above
            return silent_for_s >= min_s
        return silent_for_s >= audio_s
    if words_pending:
        return silent_for_s >= (audio_s + min_s if sure else max(audio_s, max_s))
    return silent_for_s >= audio_s


# ---------------------------------------------------------------------------------------------------
# One user's audio stream
# ---------------------------------------------------------------------------------------------------


class TurnDetector:
    """End of turn for one audio stream: push the user's 16 kHz audio as it arrives (speech and silence),
    mark where the turn's speech began, and after ``min_wait_s`` of silence ask :meth:`decide`.

    ``push``/``speech_started``/``reset`` are cheap and may be called on the event loop;
    :meth:`decide_sync` runs the model (features and ONNX: 150-400 ms measured on a busy 2-core machine) and
    is for worker threads, tests and benchmarks;
    :meth:`decide` runs it on this detector's own worker thread. Without a model (``turn_detector:
    silence`` or the model missing) every decision is ``end_of_turn_silence_ms``.

    Times are seconds on the stream's clock: ``push(samples, t)`` says when ``samples[0]`` was heard
    (the same ``t`` given to :class:`agent.vad.StreamingVAD`); without ``t`` the audio follows on.
    """

    def __init__(self, config: TurnTakingConfig, model: SmartTurnModel | None = None) -> None:
        self.config = config
        self.model = model if config.turn_detector == "smart_turn" else None
        self.min_wait_s = config.min_wait_ms / 1000.0
        self.max_wait_s = config.max_wait_ms / 1000.0
        self.fallback_s = config.end_of_turn_silence_ms / 1000.0
        self._buffer: F32 = np.zeros(2 * WINDOW_SAMPLES, np.float32)  # the last 8 s live in [:_size]
        self._size = 0
        self._end_t = 0.0  # stream time of the sample after the last one pushed
        self._onset: float | None = None  # when the turn's first speech began
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._warned_slow = False

    @classmethod
    def load(cls, config: TurnTakingConfig, model: SmartTurnModel | None = None) -> TurnDetector:
        """A detector as the persona asks; when Smart Turn is asked for but not installed, say so in the
        log and end turns on silence."""
        if config.turn_detector == "smart_turn" and model is None:
            try:
                model = SmartTurnModel()
            except MissingModelError as exc:
                log.warning("%s; ending turns after %d ms of silence", exc, config.end_of_turn_silence_ms)
        return cls(config, model)

    @property
    def semantic(self) -> bool:
        """Whether the model decides (False: silence alone)."""
        return self.model is not None

    @property
    def time_s(self) -> float:
        """Stream time just after the last sample pushed."""
        return self._end_t

    def push(self, samples: F32, t: float | None = None) -> None:
        """Append mono 16 kHz float32 audio (N,); ``t`` is the stream time of ``samples[0]``."""
        if samples.ndim != 1 or samples.dtype != np.float32:
            raise ValueError(
                f"samples must be mono float32 (N,), got {samples.dtype} {samples.shape}; "
                "convert with np.asarray(samples, np.float32).reshape(-1)"
            )
        with self._lock:
            tail = samples[-WINDOW_SAMPLES:]
            if self._size + tail.size > self._buffer.size:  # keep the last 8 s at the front
                keep = WINDOW_SAMPLES - tail.size
                self._buffer[:keep] = self._buffer[self._size - keep : self._size]
                self._size = keep
            self._buffer[self._size : self._size + tail.size] = tail
            self._size += tail.size
            start = self._end_t if t is None else t
            self._end_t = start + samples.size / SAMPLE_RATE

    def speech_started(self, onset_t: float) -> None:
        """The VAD heard speech that began at ``onset_t``; the first one of a turn marks its start."""
        with self._lock:
            if self._onset is None:
                self._onset = onset_t

    def reset(self) -> None:
        """The turn is over (or abandoned): the next speech starts a new one."""
        with self._lock:
            self._onset = None

    def turn_audio(self) -> F32:
        """The turn so far (S,), from ``PRE_SPEECH_S`` before its first speech, at most the last 8 s
        (all the audio held when no speech was marked)."""
        with self._lock:
            held = self._buffer[: self._size]
            if self._onset is not None:
                since = max(0.0, self._end_t - (self._onset - PRE_SPEECH_S))
                held = held[max(0, held.size - round(since * SAMPLE_RATE)) :]
            return held[-WINDOW_SAMPLES:].copy()

    def decide_sync(self) -> TurnDecision:
        """The silence that ends the turn, given the audio so far (blocking: runs the model)."""
        return self._decide(self.turn_audio() if self.model is not None else None)

    async def decide(self) -> TurnDecision:
        """:meth:`decide_sync` on this detector's worker thread, on the audio pushed until this call."""
        if self.model is None:
            return self._decide(None)
        audio = self.turn_audio()
        if self._pool is None:
            self._pool = compute_pool("dyad-turn")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._decide, audio)

    def _decide(self, audio: F32 | None) -> TurnDecision:
        if self.model is None or audio is None:
            return TurnDecision(self.fallback_s, None, 0.0)
        start = time.perf_counter()
        try:
            probability = self.model.predict(audio)
        except Exception:
            log.exception("Smart Turn failed; this pause ends on silence alone")
            return TurnDecision(self.fallback_s, None, time.perf_counter() - start)
        elapsed = time.perf_counter() - start
        if elapsed > self.min_wait_s and not self._warned_slow:
            self._warned_slow = True  # once per stream: on a busy CPU it would repeat every pause
            log.warning(
                "Smart Turn took %.0f ms, more than min_wait_ms: turns end that much later (the CPU is busy)",
                1e3 * elapsed,
            )
        silence = silence_for(probability, self.min_wait_s, self.max_wait_s)
        log.debug(
            "end of turn: p=%.3f -> %.0f ms of silence (model %.0f ms)",
            probability,
            1e3 * silence,
            1e3 * elapsed,
        )
        return TurnDecision(silence, probability, elapsed)

    def close(self) -> None:
        """Stop the worker thread (a call in progress finishes)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
