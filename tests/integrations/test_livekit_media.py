"""Media through the real livekit objects (no server needed): conversions, and a live Engine's frames
through rtc.AudioSource / rtc.VideoSource / rtc.AVSynchronizer with the right sizes, rates and times."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc

from agent.persona import load_persona
from avatar_core.cascade import CascadeVoice
from avatar_core.config import AppSettings
from avatar_core.engine import Engine
from avatar_core.frames import AUDIO_FRAME_SAMPLES, AUDIO_RATE, AudioFrame, VideoFrame
from avatar_core.render.stylized import StylizedRenderer
from integrations.livekit.media import (
    AvatarTracks,
    to_rtc_audio,
    to_rtc_video,
    user_image,
    video_encoding,
)
from integrations.transport import UserAudio

CACHE = AppSettings().cache_dir


def test_engine_frames_become_rtc_frames() -> None:
    samples = (np.sin(np.arange(AUDIO_FRAME_SAMPLES) / 7.0) * 8000).astype(np.int16)
    audio = to_rtc_audio(samples)
    assert audio.sample_rate == AUDIO_RATE == 24_000 and audio.num_channels == 1
    assert audio.samples_per_channel == 480 and audio.duration == pytest.approx(0.020)
    assert np.array_equal(np.frombuffer(audio.data, np.int16), samples)

    image = np.zeros((64, 96, 3), np.uint8)
    image[:, :48] = (200, 30, 40)
    image[:, 48:] = (20, 180, 90)
    video = to_rtc_video(image)
    assert (video.width, video.height, video.type) == (96, 64, rtc.VideoBufferType.RGB24)
    i420 = video.convert(rtc.VideoBufferType.I420)  # what the encoder gets
    back = user_image(i420)
    assert back.shape == (64, 96, 3)
    assert np.abs(back[:, 4:44].astype(int) - (200, 30, 40)).max() < 12
    assert np.abs(back[:, 52:92].astype(int) - (20, 180, 90)).max() < 12
    with pytest.raises(ValueError, match="RGB image"):
        to_rtc_video(np.zeros((8, 8), np.uint8))


def test_received_audio_becomes_session_samples() -> None:
    stereo = np.array([[1000, 3000], [-2000, -4000]], np.int16)
    frame = rtc.AudioFrame(stereo.tobytes(), 16_000, 2, 2)
    out = UserAudio().push_pcm(np.frombuffer(frame.data, np.int16), frame.sample_rate, frame.num_channels)
    assert out.dtype == np.float32 and out.shape == (2,)
    assert out == pytest.approx([2000 / 32768, -3000 / 32768])


def test_audio_at_an_unexpected_rate_and_channel_count_is_resampled() -> None:
    """48 kHz stereo in 20 ms frames -> 16 kHz mono, the tone kept (one resampler per stream)."""
    t = np.arange(48_000) / 48_000
    tone = (np.sin(2 * np.pi * 440 * t) * 16_000).astype(np.int16)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)  # (S * 2,) interleaved
    user = UserAudio()
    out = np.concatenate(
        [user.push_pcm(stereo[i : i + 1920], 48_000, 2) for i in range(0, stereo.size, 1920)]
    )
    assert out.dtype == np.float32 and 15_800 <= out.size <= 16_000
    spectrum = np.abs(np.fft.rfft(out[: 16_000 - 200]))
    peak_hz = np.argmax(spectrum) * 16_000 / (16_000 - 200)
    assert abs(peak_hz - 440) < 5 and 0.4 < np.abs(out).max() < 0.55


def test_camera_encoding_is_explicit() -> None:
    encoding = video_encoding(512, 512, 25)
    assert encoding.max_framerate == 25  # without it LiveKit caps small videos at 15 fps
    assert 500_000 <= encoding.max_bitrate <= 1_500_000


async def test_live_engine_frames_through_the_synchronizer() -> None:
    persona = load_persona("default")
    voice = CascadeVoice(persona.voice, persona.behaviour, 25.0, CACHE)
    engine = Engine(voice, StylizedRenderer(persona.appearance.stylized, 128, 128), persona.behaviour, fps=25)
    tracks = AvatarTracks(128, 128, 25)
    audio: list[AudioFrame] = []
    video: list[VideoFrame] = []
    async for frame in engine.frames():
        await tracks.push(frame)
        if isinstance(frame, AudioFrame):
            audio.append(frame)
        else:
            video.append(frame)
        if len(audio) == 50:  # one second
            break
    await engine.aclose()
    # A stall of a busy machine makes the live engine skip ahead instead of bursting (engine.skipped_s):
    # the frames stay on their grids, and the video frames skipped are counted.
    ticks = [round(f.pts_s / 0.02) for f in audio]
    assert ticks == sorted(set(ticks)) and ticks[-1] == 49 + round(engine.skipped_s / 0.02)
    assert [f.pts_s for f in audio] == pytest.approx([k * 0.02 for k in ticks])
    assert [f.pts_s for f in video] == pytest.approx([round(f.pts_s / 0.04) * 0.04 for f in video])
    assert tracks.audio_frames == 50 and tracks.video_frames == len(video)
    assert len(video) + engine.dropped_video == (ticks[-1] + 2) // 2
    assert all(f.samples.shape == (480,) for f in audio)
    assert all(f.image.shape == (128, 128, 3) for f in video)
    await tracks.sync.wait_for_playout()
    assert tracks.sync.last_video_time == pytest.approx(video[-1].pts_s)
    assert tracks.audio_source.queued_duration == 0.0
    await tracks.aclose()
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not pending, pending
