"""The Smart Turn end-of-turn detector: pipecat's preprocessing, real classifications of Kokoro speech, the
probability -> wait rule, the turn's audio window, and the errors when the model is missing."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError
from scipy.signal import resample_poly

from agent.persona import TurnTakingConfig
from agent.turn import (
    PRE_SPEECH_S,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    SmartTurnModel,
    TurnDecision,
    TurnDetector,
    features,
    pause_ends_turn,
    silence_for,
    smart_turn_onnx,
)
from avatar_core.bundled import MissingModelError
from avatar_core.config import AppSettings
from avatar_core.tts.kokoro import KokoroTTS

F32 = npt.NDArray[np.float32]
SENTENCE = "I was hoping to speak with someone about renewing my prescription."
CUT_AFTER_WORDS = 8  # "I was hoping to speak with someone about" | "renewing my prescription."


def _pipecat_features_module() -> ModuleType:
    """pipecat's own feature code, loaded from its file (only numpy): the package's ``__init__`` needs
    dependencies that are not installed."""
    path = smart_turn_onnx().parents[1] / "_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pipecat_reference(audio: F32) -> F32:
    """pipecat 1.14.0's ``LocalSmartTurnAnalyzerV3._predict_endpoint`` preprocessing, step by step: keep the
    last 8 s or pad zeros in front (its nested ``truncate_audio_to_last_n_seconds``), then its vendored
    ``compute_whisper_log_mel_features(audio, do_normalize=True)``."""
    if audio.size > WINDOW_SAMPLES:
        audio = audio[-WINDOW_SAMPLES:]
    elif audio.size < WINDOW_SAMPLES:
        audio = np.pad(audio, (WINDOW_SAMPLES - audio.size, 0), mode="constant", constant_values=0)
    result: F32 = _pipecat_features_module().compute_whisper_log_mel_features(audio, do_normalize=True)
    return result


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    return SmartTurnModel()


@pytest.fixture(scope="module")
def utterances() -> tuple[F32, F32]:
    """(complete, incomplete) 16 kHz audio: one Kokoro sentence, and the same audio cut at the word
    boundary after its 8th word (never a synthesized half sentence: that ends with falling intonation)."""
    timed = KokoroTTS(AppSettings().cache_dir).synthesize_timed(SENTENCE, "jm_kumo").trim_lead()
    spaces = [p for p in timed.phones if p.symbol == " "]
    assert len(spaces) == SENTENCE.count(" "), "espeak should keep one space per word boundary"
    boundary = spaces[CUT_AFTER_WORDS - 1]
    cut = round((boundary.start + boundary.end) / 2 * 24_000)
    spoken = [p for p in timed.phones if p.symbol]
    end = round(spoken[-1].end * 24_000)

    def stream(speech: npt.NDArray[np.float32]) -> F32:
        """0.3 s of quiet, the speech, 0.2 s of quiet (what the model hears after a short pause)."""
        audio = resample_poly(speech, 2, 3).astype(np.float32)  # 24 -> 16 kHz
        quiet = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
        full = np.concatenate([quiet, audio, quiet[: int(0.2 * SAMPLE_RATE)]])
        return full + np.random.default_rng(0).normal(0, 1e-4, full.size).astype(np.float32)

    return stream(timed.audio[:end]), stream(timed.audio[:cut])


# ---------------------------------------------------------------------------------------------------
# Features and model
# ---------------------------------------------------------------------------------------------------


def test_features_equal_pipecats_preprocessing(utterances: tuple[F32, F32], model: SmartTurnModel) -> None:
    complete, incomplete = utterances
    long = np.concatenate([complete, incomplete, complete, incomplete])  # > 8 s: keeps the last 8 s
    assert long.size > WINDOW_SAMPLES
    for audio in (complete, incomplete, long):
        ours, reference = features(audio), _pipecat_reference(audio)
        assert ours.shape == reference.shape == (80, 800)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, reference)  # bit for bit: the model notices the last bits
        (ref_p,) = model.session.run(None, {"input_features": reference[None]})
        assert model.predict(audio) == float(np.asarray(ref_p).item())


def test_complete_and_incomplete_utterances(utterances: tuple[F32, F32], model: SmartTurnModel) -> None:
    complete, incomplete = utterances
    assert model.predict(complete) > 0.5
    assert model.predict(incomplete) < 0.5


def test_detector_waits_short_after_complete_and_long_after_incomplete(
    utterances: tuple[F32, F32], model: SmartTurnModel
) -> None:
    config = TurnTakingConfig()
    waits = []
    for audio in utterances:
        detector = TurnDetector(config, model)
        for start in range(0, audio.size, 320):  # 20 ms frames as a transport delivers them
            detector.push(audio[start : start + 320])
        detector.speech_started(0.3)
        decision = detector.decide_sync()
        assert decision.probability is not None and decision.inference_s > 0
        waits.append(decision.silence_s)
    short, long = waits
    assert config.min_wait_ms / 1000 <= short < 0.5 * (config.min_wait_ms + config.max_wait_ms) / 1000 < long
    assert long <= config.max_wait_ms / 1000


async def test_decide_runs_off_the_event_loop(utterances: tuple[F32, F32], model: SmartTurnModel) -> None:
    detector = TurnDetector(TurnTakingConfig(), model)
    detector.push(utterances[0])
    detector.speech_started(0.3)
    try:
        decision = await detector.decide()
    finally:
        detector.close()
    again = detector.decide_sync()
    assert decision.probability == pytest.approx(again.probability)
    assert decision.silence_s == pytest.approx(again.silence_s)


# ---------------------------------------------------------------------------------------------------
# The decision rule
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("low", "high"), [(0.15, 1.5), (0.2, 3.0), (0.1, 0.2)])
def test_silence_for_is_monotonic_and_bounded(low: float, high: float) -> None:
    probabilities = np.linspace(0.0, 1.0, 201)
    waits = np.array([silence_for(float(p), low, high) for p in probabilities])
    assert np.all(np.diff(waits) <= 0)
    assert np.all((waits >= low) & (waits <= high))
    assert silence_for(1.0, low, high) == pytest.approx(low)
    assert silence_for(0.0, low, high) == pytest.approx(high)
    for odd in (-0.5, 1.5, float("nan"), float("inf"), float("-inf")):
        assert low <= silence_for(odd, low, high) <= high


def test_silence_for_rejects_unordered_bounds() -> None:
    with pytest.raises(ValueError, match="min_wait_s < max_wait_s"):
        silence_for(0.5, 1.0, 0.5)


def _first_end(
    config: TurnTakingConfig, audio: TurnDecision | None, words: tuple[str, float] | None
) -> float:
    """The first silence (10 ms steps) at which the pause ends the turn, with nothing pending."""
    return next(
        s / 100 for s in range(1000) if pause_ends_turn(config, s / 100, audio, words, words_pending=False)
    )


def test_pause_ends_turn_lets_the_words_overrule_the_audio_either_way() -> None:
    config = TurnTakingConfig(
        min_wait_ms=150,
        max_wait_ms=1000,
        veto_wait_ms=1500,
        text_veto_below=0.1,
        text_complete_above=0.5,
        trust_smart_turn_above=1.0,
    )
    unsure = TurnDecision(silence_for(0.3, 0.15, 1.0), 0.3, 0.05)  # the audio alone: about 0.57 s
    assert _first_end(config, unsure, None) == pytest.approx(unsure.silence_s, abs=0.01)
    # words that surely end a sentence end the pause at min_wait_ms, however unsure Smart Turn is
    assert _first_end(config, unsure, ("could you tell me where the books are", 0.8)) == pytest.approx(0.15)
    # words that cannot end one hold it veto_wait_ms, even when Smart Turn is sure (below the trust)
    sure = TurnDecision(0.15, 0.97, 0.05)
    assert _first_end(config, sure, ("please remind me what time the", 0.01)) == pytest.approx(1.5)
    # in between, and for short words (never vetoed), the audio decides
    assert _first_end(config, unsure, ("could you tell me", 0.3)) == pytest.approx(unsure.silence_s, abs=0.01)
    assert _first_end(config, unsure, ("my daughter", 0.01)) == pytest.approx(unsure.silence_s, abs=0.01)
    # words heard but none made out hold the pause max_wait_ms, however sure Smart Turn is
    assert _first_end(config, sure, ("", 1.0)) == pytest.approx(1.0)
    # a Smart Turn this sure of the end shortens the veto to max_wait_ms, and without a veto it ends as
    # the audio says, but only once the words are judged
    trusting = config.model_copy(update={"trust_smart_turn_above": 0.95})
    assert _first_end(trusting, sure, ("please remind me what time the", 0.01)) == pytest.approx(1.0)
    assert _first_end(trusting, sure, ("could you tell me", 0.3)) == pytest.approx(0.15)
    # while the words are still being made out, a sure pause waits for them at most min_wait_ms longer
    # than its own wait (0.15 + 0.15 s), an unsure one up to max_wait_ms
    assert not pause_ends_turn(trusting, 0.29, sure, None, words_pending=True)
    assert pause_ends_turn(trusting, 0.3, sure, None, words_pending=True)
    assert not pause_ends_turn(trusting, 0.99, unsure, None, words_pending=True)


def test_pause_ends_turn_waits_for_the_words_up_to_max_wait() -> None:
    config = TurnTakingConfig(
        min_wait_ms=150, max_wait_ms=1000, veto_wait_ms=1500, trust_smart_turn_above=0.98
    )
    sure = TurnDecision(0.15, 0.97, 0.05)  # not sure enough to shorten a veto
    assert not pause_ends_turn(config, 0.99, sure, None, words_pending=True)
    assert pause_ends_turn(config, 1.0, sure, None, words_pending=True)
    # Smart Turn still thinking counts as unsure
    assert not pause_ends_turn(config, 0.99, None, None, words_pending=False)
    assert pause_ends_turn(config, 1.0, None, None, words_pending=False)
    # a veto holds the pause veto_wait_ms, or the audio's own wait when that is longer
    veto = ("please remind me what time the", 0.0)
    assert pause_ends_turn(config, 1.5, sure, veto, words_pending=False)
    assert not pause_ends_turn(config, 1.9, TurnDecision(2.0, None, 0.0), veto, words_pending=False)
    assert pause_ends_turn(config, 2.0, TurnDecision(2.0, None, 0.0), veto, words_pending=False)


def test_turn_taking_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="max_wait_ms"):
        TurnTakingConfig(min_wait_ms=800, max_wait_ms=600)
    with pytest.raises(ValidationError, match="veto_wait_ms"):
        TurnTakingConfig(max_wait_ms=1200, veto_wait_ms=1000)
    with pytest.raises(ValidationError, match="text_complete_above"):
        TurnTakingConfig(text_veto_below=0.5, text_complete_above=0.4)
    with pytest.raises(ValidationError, match="turn_detector"):
        TurnTakingConfig.model_validate({"turn_detector": "vibes"})
    assert TurnTakingConfig(turn_detector="silence").turn_detector == "silence"


def test_silence_mode_uses_the_fallback_without_a_model(model: SmartTurnModel) -> None:
    config = TurnTakingConfig(turn_detector="silence", end_of_turn_silence_ms=700)
    detector = TurnDetector(config, model)
    assert not detector.semantic
    decision = detector.decide_sync()
    assert decision.silence_s == pytest.approx(0.7) and decision.probability is None
    assert not pause_ends_turn(config, 0.69, decision, None, words_pending=False)
    assert pause_ends_turn(config, 0.7, decision, None, words_pending=False)


# ---------------------------------------------------------------------------------------------------
# The turn's audio
# ---------------------------------------------------------------------------------------------------


def test_turn_audio_starts_before_the_speech_and_keeps_the_last_8_s() -> None:
    detector = TurnDetector(TurnTakingConfig(turn_detector="silence"))
    ramp = np.arange(12 * SAMPLE_RATE, dtype=np.float32)  # sample value = its index
    for start in range(0, ramp.size, 512):
        detector.push(ramp[start : start + 512], start / SAMPLE_RATE)
    assert detector.time_s == pytest.approx(12.0)
    detector.speech_started(10.0)
    audio = detector.turn_audio()
    assert audio[0] == (10.0 - PRE_SPEECH_S) * SAMPLE_RATE and audio[-1] == ramp[-1]
    detector.speech_started(11.0)  # later speech in the same turn does not move its start
    assert detector.turn_audio().size == audio.size
    detector.reset()
    detector.speech_started(1.0)  # long ago: only the last 8 s are held
    audio = detector.turn_audio()
    assert audio.size == WINDOW_SAMPLES and audio[0] == 4 * SAMPLE_RATE


def test_push_rejects_the_wrong_audio() -> None:
    detector = TurnDetector(TurnTakingConfig(turn_detector="silence"))
    with pytest.raises(ValueError, match="mono float32"):
        detector.push(np.zeros(320, np.int16))


# ---------------------------------------------------------------------------------------------------
# A missing model
# ---------------------------------------------------------------------------------------------------


def _without_pipecat(monkeypatch: pytest.MonkeyPatch, location: Path | None) -> None:
    """Make ``find_spec('pipecat')`` answer as if pipecat-ai were absent (None) or installed at
    ``location``."""
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "pipecat":
            return real(name, package)
        if location is None:
            return None
        spec = importlib.machinery.ModuleSpec("pipecat", None, is_package=True)
        spec.submodule_search_locations = [str(location)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_pipecat(monkeypatch, None)
    with pytest.raises(MissingModelError, match=r"pip install --no-deps pipecat-ai==1\.14\.0"):
        smart_turn_onnx()
    with pytest.raises(MissingModelError, match="turn_detector: silence"):
        SmartTurnModel()


def test_missing_file_names_the_reinstall(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "pipecat").mkdir()
    _without_pipecat(monkeypatch, tmp_path / "pipecat")
    with pytest.raises(MissingModelError, match=r"smart-turn-v3\.2-cpu\.onnx is missing.*--force-reinstall"):
        smart_turn_onnx()


def test_load_falls_back_to_silence_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _without_pipecat(monkeypatch, None)
    with caplog.at_level(logging.WARNING, logger="agent.turn"):
        detector = TurnDetector.load(TurnTakingConfig(end_of_turn_silence_ms=600))
    assert not detector.semantic
    assert detector.decide_sync().silence_s == pytest.approx(0.6)
    assert "pip install --no-deps pipecat-ai" in caplog.text and "600 ms of silence" in caplog.text
