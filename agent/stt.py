"""Speech to text: the bundled Whisper tiny.en on the CPU, or any OpenAI-compatible transcription API.

Both take one utterance (mono 16 kHz float32) and return its text, "" when nobody spoke, or raise
:class:`UnclearSpeech` when someone spoke but the words could not be made out (the session then asks the
person to say it again: ``stt.unclear_line``). Any failure raises :class:`STTError` with a reason that
names the fix; the session turns it into an error event.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import wave
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

import numpy as np
import openai
from numpy.typing import NDArray

from agent.persona import STTConfig
from avatar_core.speech.whisper import (
    COMPRESSION_RATIO_MAX,
    FULL_WINDOW_S,
    MIN_WINDOW_S,
    fits_window,
    heard,
    transcribe_window,
)
from avatar_core.workers import compute_pool

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BUNDLED_MODEL = "tiny.en"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
PLACEHOLDER_API_KEY = "sk-dyad-no-key"  # local servers check no key, but the client insists on one

SILENCE_PEAK = 1e-3  # below this (-60 dBFS) there is nothing to transcribe; skip the model


class STTError(RuntimeError):
    """Transcription failed; the message says why and how to fix it."""


class UnclearSpeech(Exception):
    """Someone spoke, but the recogniser could not make out the words (not a failure: the person is
    asked to say it again). ``guess`` is the text it doubts, for the logs only."""

    def __init__(self, guess: str = "") -> None:
        super().__init__(f"speech without words the recogniser trusts (its guess: {guess!r})")
        self.guess = guess


@dataclass(frozen=True)
class Transcript:
    """An utterance's text and how sure the recogniser is of its last word: Whisper completes a phrase
    the audio cut off ("what time does the ..." heard as "what time does this mean?") with a word it
    often doubts, and the words' end-of-turn check weighs that doubt (:meth:`agent.turn_text.TextTurnModel.
    probability`). 1.0 where the recogniser does not say (an endpoint, Whisper's 30 s pass)."""

    text: str
    last_word_probability: float = 1.0  # 1.0 too when there is no word (nothing to doubt)


async def transcript_of(stt: STT, audio: NDArray[np.float32]) -> Transcript:
    """``stt``'s :class:`Transcript` of ``audio`` (the bundled Whisper's own; any other STT's text)."""
    if isinstance(stt, WhisperSTT):
        return await stt.transcript(audio)
    return Transcript(await stt.transcribe(audio))


@runtime_checkable
class STT(Protocol):
    """Speech to text for one utterance."""

    async def transcribe(self, audio: NDArray[np.float32]) -> str:
        """Mono 16 kHz float32 in [-1, 1] -> the text, stripped ("" for no speech); raises
        :class:`UnclearSpeech` for speech whose words cannot be made out."""
        ...

    async def aclose(self) -> None:
        """Release the model or connections."""
        ...


def _checked_audio(audio: NDArray[np.float32]) -> NDArray[np.float32]:
    """A contiguous 1-D float32 copy clipped to [-1, 1], or STTError naming what is wrong."""
    array = np.asarray(audio)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise STTError(f"audio must be mono, shape (samples,); got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise STTError(f"audio must be float32 in [-1, 1]; got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise STTError("audio contains NaN or infinite samples")
    return np.ascontiguousarray(np.clip(array, -1.0, 1.0), dtype=np.float32)


def _silent(samples: NDArray[np.float32]) -> bool:
    """Nothing to transcribe: no samples, or none louder than ``SILENCE_PEAK``."""
    return samples.size == 0 or float(np.abs(samples).max()) < SILENCE_PEAK


def resolve_whisper_model(model: str | Path) -> Path:
    """'tiny.en' -> the bundled model folder; else a CTranslate2 model folder, checked."""
    if str(model) == BUNDLED_MODEL:
        from avatar_core import bundled

        try:
            return bundled.whisper_model_dir()
        except bundled.MissingModelError as exc:
            raise STTError(str(exc)) from None
    folder = Path(model).expanduser()
    hint = f"use stt.model: {BUNDLED_MODEL} (bundled) or a CTranslate2 Whisper model folder"
    if not folder.is_dir():
        # faster-whisper would treat an unknown name as a Hugging Face model and download it; dyad never
        # downloads at run time.
        raise STTError(f"Whisper model folder {folder} does not exist; {hint}")
    missing = [name for name in ("model.bin", "tokenizer.json") if not (folder / name).is_file()]
    if missing:
        raise STTError(f"Whisper model folder {folder} has no {' or '.join(missing)}; {hint}")
    return folder


class WhisperSTT:
    """faster-whisper (CTranslate2, int8, CPU), loaded once, run on its own worker threads (``workers``,
    each transcribing one utterance at a time with ``cpu_threads``).

    An utterance is read on an encoder window of its own length plus a margin, at least ``min_window_s``
    (:func:`avatar_core.speech.whisper.transcribe_window`), not on Whisper's padded 30 s: about three
    times faster for a question, with the same words; ``min_window_s=30`` keeps faster-whisper's own path.

    Loading starts in the background at construction, so the first utterance does not pay for it.
    Calls beyond ``workers`` wait for a free worker; the event loop never runs the model. Sessions
    sharing one model want as many workers as turns that end together: one queues behind the other's.
    """

    def __init__(
        self,
        model: str | Path = BUNDLED_MODEL,
        *,
        language: str = "en",
        beam_size: int = 1,
        cpu_threads: int = 1,
        workers: int = 1,
        min_window_s: float = MIN_WINDOW_S,
    ) -> None:
        self.model_dir = resolve_whisper_model(model)
        self.language = language
        self.beam_size = beam_size
        self.cpu_threads = cpu_threads
        self.workers = workers
        self.min_window_s = min_window_s
        self._executor = compute_pool("dyad-whisper", workers)
        self._model: Future[WhisperModel] = self._executor.submit(self._load)
        self._closed = False

    def _load(self) -> WhisperModel:
        from faster_whisper import WhisperModel

        try:
            return WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.cpu_threads,
                num_workers=self.workers,  # CTranslate2 runs that many transcriptions at once
                local_files_only=True,
            )
        except Exception as exc:
            raise STTError(f"cannot load the Whisper model in {self.model_dir}: {exc}") from exc

    async def warmup(self) -> None:
        """Wait until the model is loaded (raises STTError if it cannot be)."""
        await self._loaded()

    async def _loaded(self) -> WhisperModel:
        if self._closed:
            raise STTError("WhisperSTT is closed")
        try:
            if self._model.done():
                return self._model.result()
            # Shielded: a cancelled caller (a stale partial transcript) must not cancel the shared load.
            return await asyncio.shield(asyncio.wrap_future(self._model))
        except STTError:
            raise
        except Exception as exc:  # e.g. the executor was shut down under a pending load
            raise STTError(f"cannot load the Whisper model in {self.model_dir}: {exc}") from exc

    async def transcribe(self, audio: NDArray[np.float32]) -> str:
        """Transcribe one utterance; "" for silence, noise or Whisper's inventions, :class:`UnclearSpeech`
        when Whisper takes it for speech but doubts every word (:func:`heard`)."""
        return (await self.transcript(audio)).text

    async def transcript(self, audio: NDArray[np.float32]) -> Transcript:
        """:meth:`transcribe`, with Whisper's probability of the last word."""
        samples = _checked_audio(audio)
        model = await self._loaded()
        if _silent(samples):
            return Transcript("")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._transcribe_blocking, model, samples)
        except (STTError, UnclearSpeech):
            raise
        except Exception as exc:
            raise STTError(f"Whisper failed on {samples.size / SAMPLE_RATE:.2f} s of audio: {exc}") from exc

    def _transcribe_blocking(self, model: WhisperModel, samples: NDArray[np.float32]) -> Transcript:
        if self.min_window_s < FULL_WINDOW_S and fits_window(samples.size):
            window = transcribe_window(
                model,
                samples,
                language=self.language,
                beam_size=self.beam_size,
                min_window_s=self.min_window_s,
            )
            if window.compression_ratio <= COMPRESSION_RATIO_MAX:
                verdict = heard(window)
                log.debug(
                    "%s: %r (no_speech %.2f, logprob %.2f)",
                    verdict,
                    window.text,
                    window.no_speech_prob,
                    window.avg_logprob,
                )
                if verdict == "unclear":
                    raise UnclearSpeech(window.text)
                if verdict != "words":
                    return Transcript("")
                return Transcript(window.text, window.last_word_probability)
            # Whisper repeating itself is what a too short window risks: read it again on 30 s.
            log.debug("the short window looped (%r): transcribing on 30 s", window.text[:80])
        segments, _info = model.transcribe(
            samples,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,  # no fallback re-decoding: it costs time and mostly adds hallucinations
            vad_filter=False,  # the session's VAD already cut the utterance
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        kept, unclear = [], []
        for segment in segments:  # a generator: decoding happens here, on this thread
            verdict = heard(segment)
            if verdict != "words":
                if verdict == "unclear":
                    unclear.append(segment.text.strip())
                log.debug(
                    "dropped %s segment %r (no_speech %.2f, logprob %.2f, compression %.2f)",
                    verdict,
                    segment.text,
                    segment.no_speech_prob,
                    segment.avg_logprob,
                    segment.compression_ratio,
                )
                continue
            kept.append(segment.text.strip())
        text = " ".join(text for text in kept if text).strip()
        if not text and unclear:
            raise UnclearSpeech(" ".join(unclear))
        return Transcript(text)

    async def aclose(self) -> None:
        """Stop the worker thread; a transcription already running finishes on its own."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def wav_bytes(samples: NDArray[np.float32], sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float32 in [-1, 1] -> an in-memory 16-bit PCM WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in {"localhost", "127.0.0.1", "::1"} or host.endswith(".localhost")


class OpenAISTT:
    """Any OpenAI-compatible ``/v1/audio/transcriptions`` endpoint; audio goes up as a 16-bit WAV.

    ``config`` gives the endpoint (``base_url``), ``model``, ``language`` and ``api_key_env``; an explicit
    ``api_key`` wins over the environment. Without ``api_key_env``, a remote endpoint reads
    ``OPENAI_API_KEY`` and a local one (localhost) needs no key.
    """

    def __init__(
        self,
        config: STTConfig,
        *,
        api_key: str | None = None,
        timeout_s: float = 15.0,
        max_retries: int = 1,
    ) -> None:
        if config.base_url is None:  # the config validator already insists
            raise STTError("stt.backend 'openai' needs stt.base_url, e.g. https://api.openai.com/v1")
        self.base_url = config.base_url.rstrip("/")
        self.model = config.model
        self.language = config.language
        self.api_key_env = config.api_key_env
        self.timeout_s = timeout_s
        if api_key is None:
            api_key = self._api_key_from_env()
        # One quick retry (the client's own backoff, about 0.5 s) rides out a dropped connection or a
        # 502 from a proxy; more would keep the user waiting longer than asking them to repeat.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries
        )

    def _api_key_from_env(self) -> str:
        var = self.api_key_env
        if var is None:
            if _is_local(self.base_url) and not os.environ.get(DEFAULT_API_KEY_ENV):
                return PLACEHOLDER_API_KEY
            var = DEFAULT_API_KEY_ENV
        value = os.environ.get(var, "").strip()
        if not value:
            raise STTError(
                f"set {var} to the API key for {self.base_url} (export {var}=...), or name another "
                "environment variable in stt.api_key_env"
            )
        return value

    async def transcribe(self, audio: NDArray[np.float32]) -> str:
        """Send one utterance, return the text the endpoint heard. An endpoint reports only text, no
        confidence: no words for audio that is not silent (the session's VAD heard speech in it) raise
        :class:`UnclearSpeech`."""
        samples = _checked_audio(audio)
        if samples.size == 0:
            return ""
        seconds = samples.size / SAMPLE_RATE
        try:
            result = await self._client.audio.transcriptions.create(
                file=("utterance.wav", wav_bytes(samples), "audio/wav"),
                model=self.model,
                language=self.language,
            )
        except openai.APITimeoutError:
            raise STTError(
                f"{self.base_url} did not transcribe {seconds:.1f} s of audio within {self.timeout_s:g} s"
            ) from None
        except openai.APIConnectionError as exc:
            raise STTError(
                f"cannot reach the transcription endpoint {self.base_url} ({exc.__cause__ or exc}); "
                "check stt.base_url and that the server is running"
            ) from exc
        except openai.APIStatusError as exc:
            raise STTError(self._status_reason(exc)) from exc
        except (openai.APIError, ValueError, TypeError) as exc:
            raise STTError(
                f"{self.base_url} sent an invalid transcription reply ({exc}); check that stt.base_url is "
                "the root of an OpenAI-compatible API (usually ending in /v1)"
            ) from exc
        # Some servers answer in plain text whatever was asked; an HTML page means a wrong base_url.
        text = result if isinstance(result, str) else getattr(result, "text", None)
        if not isinstance(text, str) or text.lstrip().startswith("<"):
            raise STTError(
                f"{self.base_url} sent a reply that is not a transcription ({str(result)[:80]!r}); check "
                "that stt.base_url is the root of an OpenAI-compatible API (usually ending in /v1)"
            )
        if not text.strip() and not _silent(samples):
            raise UnclearSpeech()
        return text.strip()

    def _status_reason(self, exc: openai.APIStatusError) -> str:
        status = exc.status_code
        body = exc.body
        detail = body.get("message", body) if isinstance(body, dict) else exc.message
        detail = str(detail)[:200]
        if status in (401, 403):
            var = self.api_key_env or DEFAULT_API_KEY_ENV
            return f"{self.base_url} rejected the API key (HTTP {status}: {detail}); set {var} to a valid key"
        if status == 404:
            return (
                f"{self.base_url} has no /audio/transcriptions or no model {self.model!r} (HTTP 404: "
                f"{detail}); check stt.base_url (usually ending in /v1) and stt.model"
            )
        return f"{self.base_url} failed to transcribe (HTTP {status}: {detail})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()


def make_stt(config: STTConfig, *, cpu_threads: int = 1, workers: int = 1) -> STT:
    """The speech-to-text backend a persona's ``stt`` section asks for (``workers``: transcriptions at
    once of a bundled Whisper)."""
    if config.backend == "whisper":
        return WhisperSTT(
            config.model,
            language=config.language,
            beam_size=config.beam_size,
            cpu_threads=cpu_threads,
            workers=workers,
        )
    return OpenAISTT(config)


__all__ = [
    "STT",
    "OpenAISTT",
    "STTError",
    "WhisperSTT",
    "make_stt",
    "resolve_whisper_model",
    "wav_bytes",
]
