"""ListeningFeatures on real Kokoro speech and on the astronaut animated by PortraitRenderer (no mocks)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from scipy.signal import resample_poly

from avatar_core import motion as mo
from avatar_core.config import AppSettings
from avatar_core.listening_features import ListeningFeatures, yin_f0
from avatar_core.partner import PartnerFrame
from avatar_core.render.portrait import PortraitRenderer

F32 = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]
SR = 16_000
CHUNK = 320  # 20 ms
CAMERA_DT = 0.04  # a 25 fps camera


# -------------------------------------------------------------------------------------------------
# Audio
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> F32:
    """A Kokoro sentence at 16 kHz, (S,)."""
    from avatar_core.tts.kokoro import KokoroTTS

    tts = KokoroTTS(AppSettings().cache_dir)
    audio = tts.synthesize("The library opens at nine in the morning, and closes at six.", "jf_alpha")
    return np.asarray(resample_poly(audio.astype(np.float64), 2, 3), np.float32)


def listen_audio(
    features: ListeningFeatures, audio: F32, speaking: bool, t0: float = 0.0
) -> list[PartnerFrame]:
    """Push 20 ms chunks, reading a frame after each."""
    frames = []
    for start in range(0, audio.size, CHUNK):
        t = t0 + start / SR
        features.push_audio(audio[start : start + CHUNK], t, speaking)
        frames.append(features.frame(t + CHUNK / SR))
    return frames


def test_speech_gives_energy_and_a_plausible_f0(speech: F32) -> None:
    import pyworld

    frames = listen_audio(ListeningFeatures(), speech, speaking=True)
    energy = np.array([f.energy for f in frames])
    f0 = np.array([f.f0_hz for f in frames])
    assert all(f.speaking for f in frames)
    assert energy.max() > 0.05
    voiced = f0 > 0
    assert voiced.mean() > 0.4  # most of a sentence is voiced
    assert np.all((f0[voiced] >= 100) & (f0[voiced] <= 400)), f0[voiced]
    assert np.all(energy[voiced] > 0.0)

    # The same frames against pyworld's dio + stonemask on the whole signal (60 ms windows end where
    # the frame is read, so compare with the reference 30 ms earlier).
    x = speech.astype(np.float64)
    ref, times = pyworld.dio(x, SR, f0_floor=60.0, f0_ceil=500.0, frame_period=10.0)
    ref = pyworld.stonemask(x, ref, times, SR)
    ends = (np.arange(len(frames)) + 1) * CHUNK / SR
    at = np.clip(np.round((ends - 0.03) / 0.01).astype(int), 0, ref.size - 1)
    both = voiced & (ref[at] > 0)
    assert both.sum() > 0.3 * len(frames)
    error = np.abs(f0[both] / ref[at][both] - 1.0)
    assert np.median(error) < 0.03
    assert np.mean(error > 0.2) < 0.05  # few octave errors


def test_f0_is_zero_when_not_speaking_or_silent(speech: F32) -> None:
    features = ListeningFeatures()
    frames = listen_audio(features, speech, speaking=False)
    assert all(f.f0_hz == 0.0 and not f.speaking for f in frames)
    assert max(f.energy for f in frames) > 0.05  # energy does not depend on the VAD
    silent = listen_audio(features, np.zeros(SR // 2, np.float32), speaking=True, t0=10.0)
    assert silent[-1].energy == 0.0 and silent[-1].f0_hz == 0.0


def test_audio_updates_every_20_ms_whatever_the_chunking(speech: F32) -> None:
    small = ListeningFeatures()
    big = ListeningFeatures()
    odd = ListeningFeatures()
    energies = [f.energy for f in listen_audio(small, speech, speaking=True)]
    # Over a second of speech the value changes at least 10 times.
    assert len(set(energies[50:100])) >= 10
    big.push_audio(speech, 0.0, True)
    for start in range(0, speech.size, 123):
        odd.push_audio(speech[start : start + 123], start / SR, True)
    end = speech.size / SR
    assert small.frame(end) == big.frame(end) == odd.frame(end)


def test_stale_audio_reads_as_silence(speech: F32) -> None:
    features = ListeningFeatures()
    mid = speech.size // 2
    features.push_audio(speech[:mid], 0.0, True)
    assert features.frame(mid / SR).energy > 0.0
    assert features.frame(mid / SR + 1.0).energy == 0.0


def test_yin_finds_a_pure_tone() -> None:
    t = np.arange(960) / SR
    for hz in (80.0, 150.0, 310.0, 450.0):
        assert yin_f0(0.3 * np.sin(2 * np.pi * hz * t)) == pytest.approx(hz, rel=0.01)
    assert yin_f0(np.random.default_rng(1).normal(0, 0.1, 960)) == 0.0


# -------------------------------------------------------------------------------------------------
# Video
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer() -> PortraitRenderer:
    from skimage import data

    return PortraitRenderer(np.ascontiguousarray(data.astronaut(), np.uint8), 512, 512)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def render(renderer: PortraitRenderer) -> Callable[..., Image]:
    cache: dict[tuple[tuple[str, float], ...], Image] = {}

    def make(**fields: float) -> Image:
        key = tuple(sorted(fields.items()))
        if key not in cache:
            cache[key] = renderer.render(mo.frame(**fields))
        return cache[key]

    return make


class Camera:
    """Feeds frames to ListeningFeatures at 25 fps and records what it reads after each."""

    def __init__(self, features: ListeningFeatures) -> None:
        self.features = features
        self.t = 0.0

    def show(self, image: Image, count: int = 1) -> list[PartnerFrame]:
        out = []
        for _ in range(count):
            self.features.push_video(image, self.t)
            out.append(self.features.frame(self.t))
            self.t += CAMERA_DT
        return out


def warmed_up(render: Callable[..., Image], fps: float = 25.0) -> Camera:
    camera = Camera(ListeningFeatures(video_fps=fps))
    camera.show(render(), 25)  # one second of the resting face sets the baseline
    return camera


def test_resting_face_reads_zero(render: Callable[..., Image]) -> None:
    camera = warmed_up(render)
    for frame in camera.show(render(), 10):
        assert frame.face_visible
        assert frame.smile < 0.05 and frame.mouth_open < 0.05 and frame.brow_raise < 0.05 and frame.nod < 0.05
        assert frame.speaking is False and frame.energy == 0.0


def test_open_mouth(render: Callable[..., Image]) -> None:
    camera = warmed_up(render)
    frame = camera.show(render(jaw_open=0.7), 3)[-1]
    assert frame.mouth_open > 0.3
    assert frame.smile < 0.15 and frame.brow_raise < 0.15
    assert camera.show(render(), 3)[-1].mouth_open < 0.05


def test_smile(render: Callable[..., Image]) -> None:
    camera = warmed_up(render)
    neutral = camera.show(render(), 3)[-1].smile
    half = camera.show(render(smile_l=0.5, smile_r=0.5), 3)[-1].smile
    full = camera.show(render(smile_l=1.0, smile_r=1.0), 3)[-1].smile
    assert neutral < 0.05 < 0.25 < half < full
    assert full > 0.6
    # Spreading the lips for /i/ is not a smile.
    assert camera.show(render(mouth_wide=1.0), 3)[-1].smile < 0.15


def test_brow_raise(render: Callable[..., Image]) -> None:
    camera = warmed_up(render)
    raised = camera.show(render(brow_up_l=1.0, brow_up_r=1.0), 3)[-1]
    assert raised.brow_raise > 0.6
    assert raised.smile < 0.15 and raised.mouth_open < 0.15
    assert camera.show(render(brow_down=1.0), 3)[-1].brow_raise == 0.0
    assert camera.show(render(blink_l=1.0, blink_r=1.0), 3)[-1].brow_raise < 0.2


@pytest.mark.parametrize("fps", [25.0, 10.0])
def test_nod(render: Callable[..., Image], fps: float) -> None:
    camera = warmed_up(render, fps)
    steps = round(0.5 / CAMERA_DT)  # 0 -> 0.2 -> 0 rad over 0.5 s
    pitches = 0.2 * np.sin(np.pi * np.arange(steps + 1) / steps)
    nods = [camera.show(render(head_pitch=round(float(p), 4)))[0].nod for p in pitches]
    assert max(nods) > 0.3, nods
    assert nods[0] < 0.05
    after = camera.show(render(), 25)  # a second later the nod is over
    assert after[-1].nod < 0.05
    assert all(f.smile < 0.15 and f.mouth_open < 0.15 for f in after)


def test_no_face_and_fading(render: Callable[..., Image]) -> None:
    camera = warmed_up(render)
    smiling = camera.show(render(smile_l=1.0, smile_r=1.0), 3)[-1]
    assert smiling.face_visible and smiling.smile > 0.6
    grey = np.full((480, 640, 3), 128, np.uint8)
    lost_at = camera.t
    assert camera.features.push_video(grey, lost_at)
    now = camera.features.frame(lost_at)
    assert not now.face_visible
    assert now.smile == pytest.approx(smiling.smile)  # fades from there ...
    later = camera.features.frame(lost_at + 0.25)
    assert 0.0 < later.smile < 0.5 * smiling.smile
    gone = camera.features.frame(lost_at + 2.0)
    assert gone.smile < 0.01 and gone.nod < 0.01 and gone.mouth_open < 0.01  # ... to 0
    # The face comes back.
    camera.t = lost_at + 0.5
    assert camera.show(render(), 1)[-1].face_visible


def test_a_stalled_camera_means_no_face(render: Callable[..., Image]) -> None:
    camera = warmed_up(render)
    assert camera.features.frame(camera.t).face_visible
    assert not camera.features.frame(camera.t + 5.0).face_visible


def test_never_seen_a_face() -> None:
    frame = ListeningFeatures().frame(3.0)
    assert frame == PartnerFrame(t=3.0)


def test_push_video_rate_limits_to_video_fps(render: Callable[..., Image]) -> None:
    features = ListeningFeatures(video_fps=10.0)
    image = render()
    analysed = [features.push_video(image, i * CAMERA_DT) for i in range(50)]  # 2 s at 25 fps
    assert analysed[0]
    assert 19 <= sum(analysed) <= 21
    assert not features.push_video(image, 49 * CAMERA_DT)  # the same instant again
    # A camera at exactly video_fps, with jitter, keeps every frame.
    paced = ListeningFeatures(video_fps=10.0)
    jitter = np.random.default_rng(2).uniform(-0.01, 0.01, 20)
    assert all(paced.push_video(image, i * 0.1 + float(j)) for i, j in enumerate(jitter))


def test_big_frames_are_found(renderer: PortraitRenderer) -> None:
    import cv2

    small = renderer.render(mo.frame())
    big = np.ascontiguousarray(cv2.resize(small, (1280, 1280), interpolation=cv2.INTER_CUBIC), np.uint8)
    features = ListeningFeatures()
    features.push_video(big, 0.0)
    assert features.frame(0.0).face_visible


def test_small_faces_are_found_and_tracked(render: Callable[..., Image]) -> None:
    import cv2

    def small(image: Image, x: int = 300) -> Image:
        # The face about 70 px wide in a 640x480 frame: too small for the detector at 320 px wide.
        canvas = np.full((480, 640, 3), 90, np.uint8)
        canvas[140:340, x : x + 200] = cv2.resize(image, (200, 200), interpolation=cv2.INTER_AREA)
        return canvas

    camera = Camera(ListeningFeatures(video_fps=25.0))
    frames = camera.show(small(render()), 25)
    assert all(f.face_visible for f in frames)
    assert all(f.smile < 0.05 and f.mouth_open < 0.05 and f.brow_raise < 0.05 for f in frames[10:])
    assert camera.show(small(render(smile_l=1.0, smile_r=1.0)), 3)[-1].smile > 0.5
    assert camera.show(small(render(jaw_open=0.7)), 3)[-1].mouth_open > 0.3
    # The person moves over by more than a face: found again in the same frame.
    moved = camera.show(small(render(), x=60), 3)
    assert all(f.face_visible for f in moved) and moved[-1].smile < 0.05
    grey = np.full((480, 640, 3), 128, np.uint8)
    camera.show(grey, 2)  # the face leaves; when it is back, the occasional wide search finds it again
    found = [f.face_visible for f in camera.show(small(render()), 30)]
    assert not found[0] and found[-1]


def test_deterministic_and_thread_safe(render: Callable[..., Image]) -> None:
    images = [render(), render(smile_l=1.0, smile_r=1.0), render(jaw_open=0.7), render(head_pitch=0.2)]

    def run(features: ListeningFeatures) -> list[PartnerFrame]:
        out = []
        for i in range(24):
            features.push_video(images[(i // 6) % 4], i * 0.1)
            out.append(features.frame(i * 0.1))
        return out

    a, b = ListeningFeatures(), ListeningFeatures()
    # Readers hammer b from other threads while it is fed; the results must not change.
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            b.frame(0.0)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        frames_b = run(b)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert run(a) == frames_b


@pytest.mark.parametrize(
    ("image", "fix"),
    [
        (np.zeros((64, 64), np.uint8), "RGB"),
        (np.zeros((64, 64, 4), np.uint8), r"\[\.\.\., :3\]"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
    ],
)
def test_bad_video_names_the_fix(image: npt.NDArray[np.generic], fix: str) -> None:
    with pytest.raises(ValueError, match=fix):
        ListeningFeatures().push_video(image, 0.0)  # type: ignore[arg-type]


def test_bad_audio_names_the_fix() -> None:
    with pytest.raises(ValueError, match="float32"):
        ListeningFeatures().push_audio(np.zeros(320, np.int16), 0.0, True)
    with pytest.raises(ValueError, match="mono"):
        ListeningFeatures().push_audio(np.zeros((320, 2), np.float32), 0.0, True)
