"""Speech to text on real speech: bundled Whisper tiny.en, and an OpenAI-compatible endpoint running it."""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from local_http import serve_post
from numpy.typing import NDArray
from scipy.signal import resample_poly

from agent.persona import STTConfig
from agent.stt import (
    STT,
    OpenAISTT,
    STTError,
    Transcript,
    UnclearSpeech,
    WhisperSTT,
    make_stt,
    transcript_of,
    wav_bytes,
)
from avatar_core.config import AppSettings
from avatar_core.speech import whisper as whisper_window
from avatar_core.speech.whisper import WindowTranscript, fits_window, last_word_probability, window_frames
from avatar_core.tts.kokoro import KokoroTTS
from integrations.llm.local_server import free_port

SR = 16_000


@pytest.fixture(scope="module")
def speech() -> NDArray[np.float32]:
    """Kokoro saying "Where is the library?", resampled from 24 kHz to 16 kHz."""
    audio = KokoroTTS(AppSettings().cache_dir).synthesize("Where is the library?", "jf_alpha")
    resampled: NDArray[np.float32] = resample_poly(audio, 2, 3).astype(np.float32)
    return resampled


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperSTT]:
    stt = WhisperSTT()  # the bundled tiny.en
    yield stt
    asyncio.run(stt.aclose())


def read_wav(data: bytes) -> tuple[NDArray[np.float32], int]:
    with wave.open(io.BytesIO(data), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
        return (pcm.astype(np.float32) / 32767.0), reader.getframerate()


# ---------------------------------------------------------------------------------------------------
# WhisperSTT
# ---------------------------------------------------------------------------------------------------


async def test_whisper_transcribes_speech(whisper: WhisperSTT, speech: NDArray[np.float32]) -> None:
    text = await whisper.transcribe(speech)
    assert "library" in text.lower(), text
    assert text == text.strip()


async def test_whisper_says_how_sure_it_is_of_the_last_word(
    whisper: WhisperSTT, speech: NDArray[np.float32]
) -> None:
    heard = await whisper.transcript(speech)
    assert heard.text == await whisper.transcribe(speech)
    assert 0.5 < heard.last_word_probability <= 1.0, heard  # "library", clearly said
    assert await transcript_of(whisper, speech) == heard
    # A recogniser that does not say (an endpoint) is taken at its word.

    class Endpoint:
        async def transcribe(self, audio: NDArray[np.float32]) -> str:
            return "Where is the library?"

        async def aclose(self) -> None:
            """Nothing to release."""

    assert await transcript_of(Endpoint(), speech) == Transcript("Where is the library?", 1.0)


def test_the_last_word_probability_is_its_tokens_product_without_punctuation(whisper: WhisperSTT) -> None:
    from faster_whisper.tokenizer import Tokenizer

    model = whisper._load()
    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    tokens = tokenizer.encode(" where is the bibliotheque?")
    words, pieces = tokenizer.split_to_word_tokens(tokens)
    assert words[-1] == "?" and len(pieces[-2]) >= 2  # a word of several tokens, then punctuation
    chosen = [0.9] * len(tokens)
    last = range(len(tokens) - 1 - len(pieces[-2]), len(tokens) - 1)
    for step, p in zip(last, (0.5, 0.4, 0.3, 0.2), strict=False):
        chosen[step] = p
    vocab = 64 + max(tokens)
    rows = []
    for token, p in zip(tokens, chosen, strict=True):  # logits giving the chosen token probability p
        row = np.full(vocab, np.log((1 - p) / (vocab - 1)))
        row[token] = np.log(p)
        rows.append(row)
    assert last_word_probability(tokenizer, tokens, rows) == pytest.approx(np.prod([chosen[s] for s in last]))
    assert last_word_probability(tokenizer, tokenizer.encode(" ?"), rows[:1]) == 1.0  # no word at all


def test_the_encoder_window_covers_the_speech_and_a_margin() -> None:
    assert window_frames(2 * SR) == 1200  # a question: the 12 s minimum
    assert window_frames(16 * SR) == 1600 + 1 + 100  # the speech, one frame of padding and 1 s of margin
    assert window_frames(2 * SR, min_window_s=5) == 500
    assert window_frames(29 * SR) == 3000  # never more than Whisper's 30 s
    assert fits_window(28 * SR) and not fits_window(int(29.5 * SR))


async def test_the_short_window_hears_what_the_full_window_hears(
    whisper: WhisperSTT, speech: NDArray[np.float32]
) -> None:
    full = WhisperSTT(min_window_s=30.0)  # faster-whisper's own 30 s path
    try:
        assert await whisper.transcribe(speech) == await full.transcribe(speech)
        # Longer than one window: faster-whisper's path, in 30 s pieces.
        gap = np.zeros(13 * SR, np.float32)
        long = np.concatenate([speech, gap, speech, gap, speech])
        assert not fits_window(long.size)
        assert (await whisper.transcribe(long)).lower().count("library") >= 2
    finally:
        await full.aclose()


async def test_a_short_window_that_loops_is_read_again_on_30_s(
    monkeypatch: pytest.MonkeyPatch, speech: NDArray[np.float32]
) -> None:
    looped = WindowTranscript("library library library library", 0.0, -0.1, 9.0)
    calls: list[int] = []

    def looping(*args: Any, **kwargs: Any) -> WindowTranscript:
        calls.append(1)
        return looped

    monkeypatch.setattr("agent.stt.transcribe_window", looping)
    stt = WhisperSTT()
    try:
        text = await stt.transcribe(speech)
    finally:
        await stt.aclose()
    assert calls and "library" in text.lower() and text.lower().count("library") == 1, text
    assert looped.compression_ratio > whisper_window.COMPRESSION_RATIO_MAX


async def test_whisper_hears_nothing_in_silence_and_low_noise(whisper: WhisperSTT) -> None:
    rng = np.random.default_rng(0)
    silence = np.zeros(SR, np.float32)
    hiss = (rng.standard_normal(SR) * 0.005).astype(np.float32)
    noise = (rng.standard_normal(2 * SR) * 0.02).astype(np.float32)
    hum = (0.02 * np.sin(2 * np.pi * 50 * np.arange(SR) / SR)).astype(np.float32)
    for audio in (silence, hiss, noise, hum, np.zeros(0, np.float32)):
        assert await whisper.transcribe(audio) == ""


async def test_speech_whisper_cannot_make_out_is_unclear_not_silence(
    whisper: WhisperSTT, speech: NDArray[np.float32]
) -> None:
    # The question under louder noise (-5 dB SNR): Whisper hears speech (no_speech_prob about 0.1) but
    # doubts its words (average log-probability about -2.3); the person is then asked again.
    noise = np.random.default_rng(0).standard_normal(speech.size).astype(np.float32)
    noisy = (speech + 1.8 * float(np.std(speech)) * noise).astype(np.float32)
    with pytest.raises(UnclearSpeech) as caught:
        await whisper.transcribe(noisy)
    assert caught.value.guess and "library" not in caught.value.guess.lower()
    assert "library" in (await whisper.transcribe(speech)).lower()  # the next call is unaffected


async def test_whisper_runs_off_the_event_loop(whisper: WhisperSTT, speech: NDArray[np.float32]) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await whisper.transcribe(speech)
    finally:
        task.cancel()
    assert ticks > 0  # the loop kept running while Whisper worked


async def test_whisper_serialises_concurrent_calls(whisper: WhisperSTT, speech: NDArray[np.float32]) -> None:
    texts = await asyncio.gather(*(whisper.transcribe(speech) for _ in range(2)))
    assert texts[0] == texts[1] and "library" in texts[0].lower()


async def test_whisper_with_two_workers_transcribes_two_turns_at_once(speech: NDArray[np.float32]) -> None:
    """Sessions sharing one Whisper: a turn that ends with another's is read beside it, not after it."""
    stt = WhisperSTT(workers=2)
    both = threading.Barrier(2, timeout=60)  # breaks unless both calls are in at the same time
    read = stt._transcribe_blocking

    def together(model: Any, samples: NDArray[np.float32]) -> Transcript:
        both.wait()
        return read(model, samples)

    stt._transcribe_blocking = together  # type: ignore[method-assign]
    try:
        texts = await asyncio.gather(*(stt.transcribe(speech) for _ in range(2)))
        assert texts[0] == texts[1] and "library" in texts[0].lower()
        assert (await stt._loaded()).model.num_workers == 2  # CTranslate2 runs them in parallel
    finally:
        await stt.aclose()


async def test_a_cancelled_call_does_not_break_the_next(speech: NDArray[np.float32]) -> None:
    stt = WhisperSTT()  # still loading: the first call is cancelled while it waits for the model
    try:
        first = asyncio.create_task(stt.transcribe(speech))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert "library" in (await stt.transcribe(speech)).lower()
    finally:
        await stt.aclose()


@pytest.mark.parametrize(
    "audio",
    [np.zeros((2, SR), np.float32), np.arange(10, dtype=np.int16), np.array([0.0, np.nan], np.float32)],
    ids=["stereo", "int16", "nan"],
)
async def test_whisper_rejects_bad_audio(whisper: WhisperSTT, audio: NDArray[Any]) -> None:
    with pytest.raises(STTError, match="audio"):
        await whisper.transcribe(audio)


def test_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(STTError, match=str(missing)):
        WhisperSTT(missing)


def test_a_folder_without_a_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(STTError, match=rf"{tmp_path}.*model\.bin"):
        WhisperSTT(tmp_path)


async def test_a_damaged_model_fails_on_use_naming_the_folder(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "tokenizer.json").write_text("{}")
    stt = WhisperSTT(tmp_path)
    try:
        with pytest.raises(STTError, match=str(tmp_path)):
            await stt.transcribe(np.zeros(SR, np.float32))
    finally:
        await stt.aclose()


async def test_a_closed_whisper_refuses_work(speech: NDArray[np.float32]) -> None:
    stt = WhisperSTT()
    await stt.aclose()
    with pytest.raises(STTError, match="closed"):
        await stt.transcribe(speech)


def test_make_stt_builds_the_configured_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    whisper = make_stt(STTConfig())
    assert isinstance(whisper, WhisperSTT) and isinstance(whisper, STT)
    asyncio.run(whisper.aclose())

    monkeypatch.setenv("TEST_STT_KEY", "sk-test")
    config = STTConfig(backend="openai", base_url="https://api.example.com/v1", api_key_env="TEST_STT_KEY")
    remote = make_stt(config)
    assert isinstance(remote, OpenAISTT) and isinstance(remote, STT)
    asyncio.run(remote.aclose())


def test_make_stt_names_a_missing_api_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_STT_KEY", raising=False)
    config = STTConfig(backend="openai", base_url="https://api.example.com/v1", api_key_env="TEST_STT_KEY")
    with pytest.raises(STTError, match="set TEST_STT_KEY"):
        make_stt(config)


def test_a_remote_endpoint_without_api_key_env_needs_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = STTConfig(backend="openai", base_url="https://api.openai.com/v1", model="whisper-1")
    with pytest.raises(STTError, match="set OPENAI_API_KEY"):
        make_stt(config)


def test_wav_bytes_round_trips() -> None:
    samples = np.linspace(-1.0, 1.0, 101, dtype=np.float32)
    decoded, rate = read_wav(wav_bytes(samples))
    assert rate == SR
    np.testing.assert_allclose(decoded, samples, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# OpenAISTT against a real transcription endpoint (aiohttp + the real WhisperSTT)
# ---------------------------------------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serve(handler: Handler) -> AbstractAsyncContextManager[str]:
    """POST /v1/audio/transcriptions on 127.0.0.1 at a free port; yields the base URL."""
    return serve_post("/v1/audio/transcriptions", handler)


def whisper_endpoint(stt: WhisperSTT, seen: list[dict[str, str]]) -> Handler:
    """An OpenAI-style transcription endpoint backed by ``stt``; records the form fields it got."""

    async def transcriptions(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        audio, rate = read_wav(upload.file.read())
        seen.append(
            {
                "model": str(form["model"]),
                "language": str(form.get("language", "")),
                "filename": upload.filename,
                "auth": request.headers.get("Authorization", ""),
            }
        )
        if rate != SR:
            return web.json_response({"error": {"message": f"expected 16 kHz, got {rate}"}}, status=400)
        return web.json_response({"text": " " + await stt.transcribe(audio) + " "})

    return transcriptions


async def test_openai_stt_transcribes_through_a_real_endpoint(
    whisper: WhisperSTT, speech: NDArray[np.float32]
) -> None:
    seen: list[dict[str, str]] = []
    async with serve(whisper_endpoint(whisper, seen)) as url:
        config = STTConfig(backend="openai", base_url=url, model="whisper-tiny", language="en")
        stt = make_stt(config)  # a local endpoint needs no key
        try:
            remote = await stt.transcribe(speech)
        finally:
            await stt.aclose()
    assert remote == await whisper.transcribe(speech)
    assert "library" in remote.lower()
    assert seen[0]["model"] == "whisper-tiny"
    assert seen[0]["language"] == "en"
    assert seen[0]["filename"].endswith(".wav")


async def test_openai_stt_sends_the_key_from_the_named_variable(
    whisper: WhisperSTT, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_STT_KEY", "sk-from-env")
    seen: list[dict[str, str]] = []
    async with serve(whisper_endpoint(whisper, seen)) as url:
        stt = make_stt(STTConfig(backend="openai", base_url=url, api_key_env="TEST_STT_KEY"))
        try:
            assert await stt.transcribe(np.zeros(SR, np.float32)) == ""
        finally:
            await stt.aclose()
    assert seen[0]["auth"] == "Bearer sk-from-env"


async def test_openai_stt_endpoint_error_is_an_stt_error(speech: NDArray[np.float32]) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({"error": {"message": "GPU on fire"}}, status=500)

    async with serve(broken) as url:
        stt = OpenAISTT(STTConfig(backend="openai", base_url=url, model="whisper-1"), max_retries=0)
        try:
            with pytest.raises(STTError, match=r"500.*GPU on fire"):
                await stt.transcribe(speech)
        finally:
            await stt.aclose()


async def test_openai_stt_no_words_for_speech_is_unclear(speech: NDArray[np.float32]) -> None:
    # An endpoint reports no confidence: no words for audio that is not silent means they were not made
    # out; for silence, no words is the answer.
    async def nothing(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({"text": " "})

    async with serve(nothing) as url:
        stt = OpenAISTT(STTConfig(backend="openai", base_url=url), max_retries=0)
        try:
            with pytest.raises(UnclearSpeech):
                await stt.transcribe(speech)
            assert await stt.transcribe(np.zeros(SR, np.float32)) == ""
        finally:
            await stt.aclose()


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b" where is the library? ", "where is the library?"),
        ("text/html", b"<html><h1>Welcome to nginx!</h1></html>", None),
        ("application/json", b'{"transcript": "hi"}', None),
        ("application/json", b"{not json", None),
    ],
    ids=["plain-text", "html", "no-text", "bad-json"],
)
async def test_openai_stt_odd_replies(
    speech: NDArray[np.float32], content_type: str, body: bytes, expected: str | None
) -> None:
    async def odd(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async with serve(odd) as url:
        stt = OpenAISTT(STTConfig(backend="openai", base_url=url), max_retries=0)
        try:
            if expected is None:
                with pytest.raises(STTError, match=r"stt\.base_url"):
                    await stt.transcribe(speech)
            else:
                assert await stt.transcribe(speech) == expected
        finally:
            await stt.aclose()


async def test_openai_stt_401_names_the_key_variable(
    speech: NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_STT_KEY", "sk-wrong")

    async def denied(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response({"error": {"message": "bad key"}}, status=401)

    async with serve(denied) as url:
        stt = OpenAISTT(
            STTConfig(backend="openai", base_url=url, model="whisper-1", api_key_env="TEST_STT_KEY")
        )
        try:
            with pytest.raises(STTError, match="TEST_STT_KEY"):
                await stt.transcribe(speech)
        finally:
            await stt.aclose()


async def test_openai_stt_unreachable_endpoint_is_an_stt_error(speech: NDArray[np.float32]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    stt = OpenAISTT(STTConfig(backend="openai", base_url=url, model="whisper-1"), max_retries=0)
    try:
        with pytest.raises(STTError, match=f"cannot reach.*{url}"):
            await stt.transcribe(speech)
    finally:
        await stt.aclose()


async def test_openai_stt_times_out(speech: NDArray[np.float32]) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await request.read()
        await release.wait()
        return web.json_response({"text": "too late"})

    async with serve(slow) as url:
        stt = OpenAISTT(
            STTConfig(backend="openai", base_url=url, model="whisper-1"), timeout_s=0.5, max_retries=0
        )
        try:
            with pytest.raises(STTError, match=r"within 0\.5 s"):
                await stt.transcribe(speech)
        finally:
            release.set()
            await stt.aclose()
