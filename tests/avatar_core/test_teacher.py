"""The procedural teacher: visemes with coarticulation, exact bilabial closure, blinks, listening."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_core.config import AppSettings, BehaviourConfig
from avatar_core.motion import INDEX, check, get
from avatar_core.partner import PartnerFrame
from avatar_core.teacher import Phone, Prosody, listen, speak
from avatar_core.teacher.idle import BLINK_MAX_S, BLINK_MIN_S
from avatar_core.teacher.visemes import BILABIALS, VISEMES, viseme_class

FPS = 25.0


def timeline(spec: str, step: float = 0.08, lead: float = 0.3) -> list[Phone]:
    """Phones of equal length from a string of symbols, after ``lead`` seconds of silence."""
    phones = [Phone("", 0.0, lead)]
    t = lead
    for symbol in spec:
        phones.append(Phone(symbol, t, t + step))
        t += step
    phones.append(Phone("", t, t + 0.3))
    return phones


def flat_prosody(seconds: float, f0: float = 180.0) -> Prosody:
    n = int(seconds * FPS) + 1
    return Prosody(FPS, np.full(n, f0, np.float32), np.full(n, 0.1, np.float32))


def closed(track: np.ndarray) -> np.ndarray:
    return get(track, "lips_pressed") >= 0.99


def test_every_symbol_class_has_targets() -> None:
    for symbol in "pbmfvθðtdnszʃʒʧʤkgŋlɹwjaæɑʌɛeəiɪuʊoɔIWAOYQ":
        cls = viseme_class(symbol)
        assert cls is not None and cls in VISEMES, symbol
    assert viseme_class("ˈ") is None and viseme_class(" ") is None and viseme_class(".") == "rest"


@pytest.mark.parametrize("step", [0.03, 0.06, 0.1])
def test_lip_closure_exactly_inside_bilabials(step: float) -> None:
    phones = timeline("hɛlˈOmaɪbɹˈAvpaʊ", step=step)
    end = phones[-1].end
    track = speak(phones, flat_prosody(end), FPS, BehaviourConfig(), seed=3)
    times = np.arange(len(track)) / FPS
    bilabials = [p for p in phones if p.symbol in BILABIALS]
    is_closed = closed(track)
    for p in bilabials:
        inside = (times >= p.start) & (times <= p.end)
        if inside.any():
            assert is_closed[inside].all(), p
        else:  # shorter than a frame: the nearest frame shows it
            assert is_closed[round(0.5 * (p.start + p.end) * FPS)], p
    near = np.zeros(len(times), bool)
    for p in bilabials:
        near |= (times >= p.start - 1 / FPS) & (times <= p.end + 1 / FPS)
    assert not is_closed[~near].any()


def test_coarticulation_blends_instead_of_stepping() -> None:
    phones = timeline("aiaua", step=0.12)
    track = speak(phones, flat_prosody(1.5), 100.0, BehaviourConfig(), seed=0)
    jaw = get(track, "jaw_open")
    assert np.abs(np.diff(jaw)).max() < 0.1  # no jumps between 10 ms frames
    wide, rnd = get(track, "mouth_wide"), get(track, "mouth_round")
    t_i, t_u = int((0.3 + 0.18) * 100), int((0.3 + 0.42) * 100)
    assert wide[t_i] > wide[t_u] and rnd[t_u] > rnd[t_i]


def test_viseme_targets_show_in_the_track() -> None:
    track = speak(timeline("afa", step=0.15), flat_prosody(1.2), FPS, BehaviourConfig(), seed=0)
    t_f = int((0.3 + 0.225) * FPS)
    assert get(track, "lower_lip_down")[t_f] < -0.4  # /f/ tucks the lower lip
    t_a = int((0.3 + 0.075) * FPS)
    assert get(track, "jaw_open")[t_a] > 0.45  # /a/ opens the jaw
    rounded = speak(timeline("u", step=0.3), flat_prosody(1.0), FPS, BehaviourConfig(), seed=0)
    assert get(rounded, "mouth_round")[int(0.45 * FPS)] > 0.6


def test_pitch_accent_brings_a_nod_and_brow_raise() -> None:
    phones = timeline("ðəlˈIbɹɛɹi", step=0.1)
    n = int(2.0 * FPS)
    f0 = np.full(n, 150.0, np.float32)
    accent = phones[4]  # the stressed vowel after ˈ
    f0[int(accent.start * FPS) : int(accent.end * FPS) + 2] = 230.0
    prosody = Prosody(FPS, f0, np.full(n, 0.1, np.float32))
    track = speak(phones, prosody, FPS, BehaviourConfig(), seed=1)
    flat = speak(phones, flat_prosody(2.0, 150.0), FPS, BehaviourConfig(blinks_per_minute=4), seed=1)
    window = slice(int((accent.start - 0.2) * FPS), int((accent.end + 0.3) * FPS))
    assert get(track, "head_pitch")[window].max() > get(flat, "head_pitch")[window].max() + 0.02
    assert get(track, "brow_up_l")[window].max() > 0.2


@pytest.mark.parametrize("rate", [12.0, 17.0, 20.0])
def test_blink_rate_over_a_minute_matches_config(rate: float) -> None:
    behaviour = BehaviourConfig(blinks_per_minute=rate)
    for seed in range(3):
        track = speak(timeline("a", step=59.0), flat_prosody(60.0), FPS, behaviour, seed=seed)[
            : int(60 * FPS)
        ]
        blink = get(track, "blink_l") > 0.5
        onsets = np.flatnonzero(blink[1:] & ~blink[:-1])
        assert 0.8 * rate <= len(onsets) <= 1.2 * rate, (seed, len(onsets))
        # each blink is short: 100-150 ms total, so at most 4 frames above half closure at 25 fps
        lengths = np.diff(np.flatnonzero(np.diff(np.r_[0, blink.astype(int), 0])))[::2]
        assert lengths.max() <= int(np.ceil(BLINK_MAX_S * FPS)) + 1
    assert BLINK_MIN_S == 0.10 and BLINK_MAX_S == 0.15


def test_more_blinks_at_phrase_ends() -> None:
    behaviour = BehaviourConfig(blinks_per_minute=6)
    phones = []
    t = 0.0
    for _ in range(20):  # 20 short phrases
        for symbol in "hɛlO.":
            phones.append(Phone(symbol, t, t + 0.1))
            t += 0.1
        phones.append(Phone("", t, t + 1.0))
        t += 1.0
    with_ends = speak(phones, flat_prosody(t), FPS, behaviour, seed=2)
    without = speak([p for p in phones if p.symbol != "."], flat_prosody(t), FPS, behaviour, seed=2)

    def count(track: np.ndarray) -> int:
        return int(np.sum(np.diff((get(track, "blink_l") > 0.5).astype(int)) == 1))

    assert count(with_ends) > count(without) + 3


def test_speak_is_deterministic_and_in_range() -> None:
    phones = timeline("ðəlˈIbɹɛɹi ˈOpənz æt nˈIn")
    a = speak(phones, flat_prosody(3.0), FPS, BehaviourConfig(), seed=7)
    b = speak(phones, flat_prosody(3.0), FPS, BehaviourConfig(), seed=7)
    c = speak(phones, flat_prosody(3.0), FPS, BehaviourConfig(), seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    check(a)


def partner_track(seconds: float, speech: list[tuple[float, float]], low: list[tuple[float, float]],
                  smile_at: float | None = None) -> list[PartnerFrame]:  # fmt: skip
    frames = []
    for k in range(int(seconds * FPS)):
        t = k / FPS
        speaking = any(a <= t < b for a, b in speech)
        f0 = 120.0 if any(a <= t < b for a, b in low) else 200.0
        smile = 1.0 if smile_at is not None and t >= smile_at else 0.0
        frames.append(PartnerFrame(t, speaking, f0 if speaking else 0.0, 0.1 if speaking else 0.0,
                                   face_visible=True, smile=smile))  # fmt: skip
    return frames


def nods(track: np.ndarray, threshold: float = 0.03) -> list[float]:
    pitch = get(track, "head_pitch") > threshold
    return [k / FPS for k in np.flatnonzero(pitch[1:] & ~pitch[:-1])]


def test_backchannel_nod_follows_a_low_pitch_region() -> None:
    behaviour = BehaviourConfig(backchannel_rate=1.0, expressiveness=1.0)
    frames = partner_track(8.0, speech=[(0.5, 7.5)], low=[(3.0, 3.3)])
    track = listen(frames, FPS, behaviour, seed=0)
    onsets = nods(track)
    # Ward & Tsukahara: detected 110 ms into the region, answered about 700 ms later.
    assert any(3.7 <= t <= 4.1 for t in onsets), onsets
    assert not [t for t in onsets if 3.0 <= t < 3.7], onsets


def test_low_pitch_shorter_than_110_ms_brings_no_nod() -> None:
    behaviour = BehaviourConfig(backchannel_rate=1.0)
    frames = partner_track(8.0, speech=[(0.5, 7.5)], low=[(3.0, 3.08)])
    assert not [t for t in nods(listen(frames, FPS, behaviour, seed=0)) if 3.0 <= t <= 4.0]


def test_backchannel_nod_after_a_pause_and_rate_zero_means_none() -> None:
    frames = partner_track(6.0, speech=[(0.5, 3.0)], low=[])
    assert any(3.2 <= t <= 4.0 for t in nods(listen(frames, FPS, BehaviourConfig(backchannel_rate=1.0))))
    assert not nods(listen(frames, FPS, BehaviourConfig(backchannel_rate=0.0)))


def test_a_short_phrase_then_a_pause_is_answered_a_lone_hi_is_not() -> None:
    behaviour = BehaviourConfig(backchannel_rate=1.0)
    phrase = partner_track(4.0, speech=[(0.5, 1.1), (2.0, 3.5)], low=[])  # "Of course." (0.6 s), pause
    onsets = nods(listen(phrase, FPS, behaviour))
    assert any(1.2 <= t <= 2.0 for t in onsets), onsets
    hi = partner_track(4.0, speech=[(0.5, 0.8), (1.7, 3.5)], low=[])  # "Hi." (0.3 s), pause
    assert not [t for t in nods(listen(hi, FPS, behaviour)) if 0.8 <= t <= 1.7]


def test_a_pause_right_after_a_nod_is_answered_once_the_refractory_time_is_over() -> None:
    behaviour = BehaviourConfig(backchannel_rate=1.0)
    # A pause at 2.0-2.6 s nods at about 2.4 s; the next, at 3.0 s, comes too soon and is answered
    # once 1.5 s have passed since that nod, while it lasts (until 4.5 s); none while it is refractory.
    frames = partner_track(6.0, speech=[(0.5, 2.0), (2.6, 3.0), (4.5, 5.5)], low=[])
    onsets = nods(listen(frames, FPS, behaviour))
    first = [t for t in onsets if 2.0 <= t < 2.8]
    assert first, onsets
    later = [t for t in onsets if 2.8 <= t < 4.6]
    assert later and later[0] >= first[0] + 1.4, onsets


def test_the_chance_of_a_nod_grows_with_the_time_without_feedback() -> None:
    from avatar_core.teacher.listening import FEEDBACK_DUE_S, NOD_REFRACTORY_S, ListeningLayer

    layer = ListeningLayer(FPS, BehaviourConfig(backchannel_rate=0.6), np.random.default_rng(0))
    layer.last_nod = 10.0
    assert layer._chance(10.0 + NOD_REFRACTORY_S) == pytest.approx(0.6)
    assert layer._chance(10.0 + NOD_REFRACTORY_S + FEEDBACK_DUE_S) == pytest.approx(1 - 0.4**2)
    layer.behaviour = BehaviourConfig(backchannel_rate=0.0)
    assert layer._chance(100.0) == 0.0


def test_smile_is_mirrored_after_a_lag() -> None:
    frames = partner_track(5.0, speech=[], low=[], smile_at=2.0)
    track = listen(frames, FPS, BehaviourConfig(smile_mirroring=1.0), seed=4)
    smile = get(track, "smile_l")
    assert smile[int(2.0 * FPS) + 5] < 0.05  # not yet at +0.2 s... the lag is 0.3-0.6 s
    onset = int(np.argmax(smile > 0.2)) / FPS
    assert 2.3 <= onset <= 2.9
    assert smile[-1] > 0.7


def test_gaze_aversion_share_follows_behaviour() -> None:
    frames = partner_track(60.0, speech=[], low=[])
    for share in (0.1, 0.4):
        track = listen(frames, FPS, BehaviourConfig(gaze_aversion=share), seed=5)
        away = np.mean(np.abs(get(track, "gaze_x")) > 0.2)
        assert 0.4 * share <= away <= 1.8 * share, (share, away)


def test_listening_is_deterministic() -> None:
    frames = partner_track(6.0, speech=[(0.5, 5.0)], low=[(2.0, 2.4)], smile_at=3.0)
    a = listen(frames, FPS, BehaviourConfig(), seed=9)
    assert np.array_equal(a, listen(frames, FPS, BehaviourConfig(), seed=9))
    check(a)


def test_teacher_on_real_kokoro_timing(tmp_path_factory: pytest.TempPathFactory) -> None:
    from avatar_core.speech.prosody import prosody_from_audio
    from avatar_core.tts.kokoro import SAMPLE_RATE, KokoroTTS

    cache = AppSettings().cache_dir
    tts = KokoroTTS(cache)
    speech = tts.synthesize_timed("Maybe Bob bought a map.", "jf_alpha")
    assert abs(speech.phones[-1].end - speech.duration_s) < 1e-6  # durations add up to the audio
    track = speak(speech.phones, prosody_from_audio(speech.audio, SAMPLE_RATE, FPS), FPS, BehaviourConfig())
    times = np.arange(len(track)) / FPS
    for p in (p for p in speech.phones if p.symbol in BILABIALS):
        inside = (times >= p.start) & (times <= p.end)
        assert closed(track)[inside].all() if inside.any() else closed(track)[round(p.start * FPS)]
    assert get(track, "jaw_open").max() > 0.3
    assert INDEX["jaw_open"] == 0


def test_the_running_low_pitch_threshold_is_the_26th_percentile() -> None:
    from avatar_core.teacher.listening import ListeningLayer

    rng = np.random.default_rng(1)
    layer = ListeningLayer(FPS, BehaviourConfig(), np.random.default_rng(0))
    for k in range(600):  # longer than the 10 s the history keeps
        f0 = float(rng.uniform(80.0, 300.0)) if rng.uniform() < 0.7 else 0.0
        layer.step(PartnerFrame(k / FPS, speaking=True, f0_hz=f0))
        if len(layer.f0_history) >= 20:
            assert layer._low_pitch() == pytest.approx(float(np.percentile(layer.f0_history, 26)), abs=1e-9)
