"""StreamingVAD on real Kokoro speech with the bundled Silero model (no mocks)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy.signal import resample_poly

from agent.vad import StreamingVAD, VADEvent
from avatar_core.config import AppSettings

F32 = npt.NDArray[np.float32]
SR = StreamingVAD.SAMPLE_RATE
LEAD_S = 1.0
GAP_S = 1.5
TAIL_S = 1.0
BOUNDARY_TOLERANCE_S = 0.25


def to_16k(audio_24k: F32) -> F32:
    """Kokoro's 24 kHz audio -> 16 kHz with a polyphase low-pass resampler."""
    return np.asarray(resample_poly(audio_24k.astype(np.float64), 2, 3), np.float32)


def speech_bounds(x: F32) -> tuple[float, float]:
    """(first, last) second where the 10 ms RMS envelope is above 2 % of its peak: the true speech span."""
    hop = SR // 100
    frames = x[: x.size // hop * hop].reshape(-1, hop)  # (F, 160)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))  # (F,)
    loud = np.flatnonzero(rms > 0.02 * rms.max())
    return float(loud[0] * hop / SR), float((loud[-1] + 1) * hop / SR)


class Dialogue:
    """Two sentences with silence around and between them, and where the speech truly is."""

    def __init__(self, first: F32, second: F32) -> None:
        silence = np.zeros(int(GAP_S * SR), np.float32)
        self.first, self.second = first, second
        self.audio: F32 = np.concatenate(
            [
                np.zeros(int(LEAD_S * SR), np.float32),
                first,
                silence,
                second,
                np.zeros(int(TAIL_S * SR), np.float32),
            ]
        )
        a0, a1 = speech_bounds(first)
        b0, b1 = speech_bounds(second)
        offset = LEAD_S + first.size / SR + GAP_S
        self.truth = [(LEAD_S + a0, LEAD_S + a1), (offset + b0, offset + b1)]


@pytest.fixture(scope="module")
def dialogue() -> Dialogue:
    from avatar_core.tts.kokoro import KokoroTTS

    tts = KokoroTTS(AppSettings().cache_dir)
    first = to_16k(tts.synthesize("The library opens at nine in the morning.", "jf_alpha"))
    second = to_16k(tts.synthesize("Could you tell me where the history books are?", "jf_alpha"))
    return Dialogue(first, second)


def stream(vad: StreamingVAD, audio: F32, chunk: int, t0: float = 0.0) -> list[VADEvent]:
    """Push ``audio`` in ``chunk``-sample pieces, each stamped with its own start time."""
    events: list[VADEvent] = []
    for start in range(0, audio.size, chunk):
        events += vad.push(audio[start : start + chunk], t0 + start / SR)
    return events


def segments(events: list[VADEvent]) -> list[tuple[float, float]]:
    """Pair speech_start/speech_end events into (start, end) segments, checking they alternate."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for event in events:
        if event.kind == "speech_start":
            assert start is None, events
            start = event.t
        else:
            assert start is not None, events
            assert event.speech_s == pytest.approx(event.t - start, abs=1e-6)
            out.append((start, event.t))
            start = None
    assert start is None, f"unterminated speech: {events}"
    return out


def test_two_sentences_give_two_segments_at_the_true_boundaries(dialogue: Dialogue) -> None:
    vad = StreamingVAD()
    events = stream(vad, dialogue.audio, 320)
    found = segments(events)
    assert len(found) == 2, events
    for (start, end), (true_start, true_end) in zip(found, dialogue.truth, strict=True):
        assert abs(start - true_start) <= BOUNDARY_TOLERANCE_S, (found, dialogue.truth)
        assert abs(end - true_end) <= BOUNDARY_TOLERANCE_S, (found, dialogue.truth)
    for event in events:
        if event.kind == "speech_start":
            assert 0.25 <= event.speech_s < 0.25 + 0.032 + 1e-6  # confirmed one window after min_speech_ms
    assert not vad.speaking and vad.run_s == 0.0


def test_chunk_size_does_not_change_the_events(dialogue: Dialogue) -> None:
    small = stream(StreamingVAD(), dialogue.audio, 320)
    odd = stream(StreamingVAD(), dialogue.audio, 777)
    big = StreamingVAD().push(dialogue.audio, 0.0)
    assert len(small) == len(odd) == len(big) == 4
    for a, b, c in zip(small, odd, big, strict=True):
        assert a.kind == b.kind == c.kind
        assert a.t == pytest.approx(c.t, abs=1e-6) and b.t == pytest.approx(c.t, abs=1e-6)
        assert a.speech_s == pytest.approx(c.speech_s, abs=1e-6)


def test_time_stamps_follow_the_callers_clock(dialogue: Dialogue) -> None:
    shifted = stream(StreamingVAD(), dialogue.audio, 320, t0=100.0)
    plain = stream(StreamingVAD(), dialogue.audio, 320)
    assert [e.t - 100.0 for e in shifted] == pytest.approx([e.t for e in plain], abs=1e-6)


def test_silence_and_low_noise_give_no_events() -> None:
    vad = StreamingVAD()
    assert stream(vad, np.zeros(SR, np.float32), 320) == []
    noise = np.random.default_rng(0).uniform(-0.01, 0.01, SR).astype(np.float32)
    assert stream(vad, noise, 320, t0=1.0) == []
    assert not vad.speaking and vad.probability < 0.5


def test_a_short_blip_is_not_speech(dialogue: Dialogue) -> None:
    # The loudest 150 ms of the first sentence, alone between silences.
    x = dialogue.first
    win = int(0.150 * SR)
    energy = np.convolve(x.astype(np.float64) ** 2, np.ones(win), mode="valid")  # (S - win + 1,)
    start = int(np.argmax(energy))
    blip = x[start : start + win]
    silence = np.zeros(SR, np.float32)
    vad = StreamingVAD(min_speech_ms=250)
    runs: list[float] = []
    events: list[VADEvent] = []
    audio = np.concatenate([silence, blip, silence])
    for i in range(0, audio.size, 320):
        events += vad.push(audio[i : i + 320], i / SR)
        runs.append(vad.run_s)
    assert events == []
    assert max(runs) > 0.0  # the model did hear it: only min_speech_ms kept it from being speech
    assert not vad.speaking


def test_long_min_silence_merges_the_sentences(dialogue: Dialogue) -> None:
    # The true pause is longer than GAP_S: Kokoro leaves some silence at both ends of a sentence.
    pause_s = dialogue.truth[1][0] - dialogue.truth[0][1]
    min_silence_ms = round((pause_s + 0.5) * 1000)
    audio = np.concatenate([dialogue.audio, np.zeros(2 * min_silence_ms * SR // 1000, np.float32)])
    found = segments(stream(StreamingVAD(min_silence_ms=min_silence_ms), audio, 320))
    assert len(found) == 1
    (start, end) = found[0]
    assert abs(start - dialogue.truth[0][0]) <= BOUNDARY_TOLERANCE_S
    assert abs(end - dialogue.truth[1][1]) <= BOUNDARY_TOLERANCE_S


def test_probabilities_match_silero_onnx_wrapper(dialogue: Dialogue) -> None:
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    from avatar_core.bundled import silero_vad_onnx

    reference = OnnxWrapper(str(silero_vad_onnx()), force_onnx_cpu=True)
    vad = StreamingVAD()
    audio = dialogue.audio[: dialogue.audio.size // 512 * 512]
    ours, theirs = [], []
    for i in range(0, audio.size, 512):
        window = audio[i : i + 512]
        vad.push(window[:200], i / SR)  # split, to exercise the partial-window buffer
        vad.push(window[200:], (i + 200) / SR)
        ours.append(vad.probability)
        theirs.append(float(reference(torch.from_numpy(window.copy()), SR).item()))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert max(ours) > 0.9 and min(ours) < 0.1


def test_segments_equal_silero_get_speech_timestamps(dialogue: Dialogue) -> None:
    import torch
    from silero_vad.utils_vad import OnnxWrapper, get_speech_timestamps

    from avatar_core.bundled import silero_vad_onnx

    audio = np.concatenate([dialogue.audio, np.zeros(4 * SR, np.float32)])  # time to end every segment
    for min_silence_ms in (100, 300, 3000):
        ours = segments(stream(StreamingVAD(min_silence_ms=min_silence_ms), audio, 320))
        model = OnnxWrapper(str(silero_vad_onnx()), force_onnx_cpu=True)
        # Offline silero waits one more 32 ms window of silence before ending a segment.
        theirs = get_speech_timestamps(
            torch.from_numpy(audio),
            model,
            min_silence_duration_ms=min_silence_ms - 32,
            speech_pad_ms=0,
        )
        assert [(round(a * SR), round(b * SR)) for a, b in ours] == [(s["start"], s["end"]) for s in theirs]
        assert len(ours) >= (2 if min_silence_ms <= 300 else 1)


def test_run_s_reports_unconfirmed_speech_and_reset_clears(dialogue: Dialogue) -> None:
    vad = StreamingVAD(min_speech_ms=1000)
    lead = int(LEAD_S * SR)
    audio = dialogue.audio[: lead + int(0.5 * SR)]  # silence, then the first 0.5 s of speech
    events = stream(vad, audio, 320)
    assert events == []  # not yet 1 s of speech
    assert 0.1 < vad.run_s <= 0.5 + 1e-6
    assert not vad.speaking
    vad.reset()
    assert vad.run_s == 0.0 and vad.probability == 0.0 and not vad.speaking
    # After a reset the model state is fresh: the same audio gives the same probabilities again.
    fresh = StreamingVAD()
    for i in range(0, lead + 4096, 512):
        vad.push(dialogue.audio[i : i + 512], i / SR)
        fresh.push(dialogue.audio[i : i + 512], i / SR)
        assert vad.probability == fresh.probability


@pytest.mark.parametrize(
    ("samples", "fix"),
    [
        (np.zeros(320, np.int16), "astype"),
        (np.zeros(320, np.float64), "astype"),
        (np.zeros((320, 2), np.float32), "mean"),
        (np.full(320, np.nan, np.float32), "nan_to_num"),
        ([0.0] * 320, "asarray"),
    ],
)
def test_bad_input_names_the_fix(samples: object, fix: str) -> None:
    with pytest.raises(ValueError, match=fix):
        StreamingVAD().push(samples, 0.0)  # type: ignore[arg-type]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        StreamingVAD(threshold=1.5)
    with pytest.raises(ValueError, match="min_speech_ms"):
        StreamingVAD(min_speech_ms=-1)
