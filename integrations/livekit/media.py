"""Media between the Engine and a LiveKit room.

Out: the Engine's 20 ms 24 kHz int16 audio frames and RGB video frames go through one ``rtc.AudioSource``
(the microphone track), one ``rtc.VideoSource`` (the camera track) and an ``rtc.AVSynchronizer`` that
paces video at the persona's fps against the audio. The camera track is published with an explicit
``VideoEncoding`` (frame rate and bitrate): without it LiveKit caps small videos at 15 fps.

In: a participant's video track as RGB frames (their audio goes through
:class:`integrations.transport.UserAudio`).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import numpy.typing as npt
from livekit import rtc

from avatar_core.frames import AUDIO_RATE, AudioFrame, OutputFrame

log = logging.getLogger(__name__)

AUDIO_QUEUE_MS = 100  # the AudioSource's buffer: short, so an interruption is heard at once
VIDEO_QUEUE_MS = 100
BITS_PER_PIXEL = 0.1  # VP8 at 512x512 25 fps -> about 650 kbit/s, plenty for a drawn face
MIN_BITRATE = 300_000
AUDIO_TRACK = "dyad-voice"
VIDEO_TRACK = "dyad-face"


# ---------------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------------


def to_rtc_audio(samples: npt.NDArray[np.int16], sample_rate: int = AUDIO_RATE) -> rtc.AudioFrame:
    """Mono int16 samples (S,) -> an ``rtc.AudioFrame``."""
    data = np.ascontiguousarray(samples, dtype=np.int16)
    return rtc.AudioFrame(data.tobytes(), sample_rate, 1, data.size)


def to_rtc_video(image: npt.NDArray[np.uint8]) -> rtc.VideoFrame:
    """An RGB image (H, W, 3) -> an ``rtc.VideoFrame`` (RGB24; LiveKit converts it to I420 to encode)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    height, width = image.shape[:2]
    data = np.ascontiguousarray(image, dtype=np.uint8)
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, data.tobytes())


def user_image(frame: rtc.VideoFrame) -> npt.NDArray[np.uint8]:
    """A received video frame (any buffer type) -> an RGB image (H, W, 3)."""
    rgb = frame if frame.type == rtc.VideoBufferType.RGB24 else frame.convert(rtc.VideoBufferType.RGB24)
    data = np.frombuffer(rgb.data, dtype=np.uint8)
    return data[: rgb.height * rgb.width * 3].reshape(rgb.height, rgb.width, 3).copy()


def video_encoding(width: int, height: int, fps: float) -> rtc.VideoEncoding:
    """The camera track's encoding: the persona's frame rate and a bitrate for its size."""
    bitrate = max(MIN_BITRATE, round(width * height * fps * BITS_PER_PIXEL))
    return rtc.VideoEncoding(max_framerate=float(fps), max_bitrate=bitrate)


async def publish_tracks(
    participant: rtc.LocalParticipant,
    audio_source: rtc.AudioSource,
    video_source: rtc.VideoSource,
    encoding: rtc.VideoEncoding,
) -> tuple[rtc.LocalTrackPublication, rtc.LocalTrackPublication]:
    """Publish the avatar's microphone and camera (with its explicit encoding); returns both
    publications."""
    audio = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK, audio_source)
    audio_publication = await participant.publish_track(
        audio, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    video = rtc.LocalVideoTrack.create_video_track(VIDEO_TRACK, video_source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, video_encoding=encoding)
    video_publication = await participant.publish_track(video, options)
    log.info("published %s and %s", audio_publication.sid, video_publication.sid)
    return audio_publication, video_publication


# ---------------------------------------------------------------------------------------------------
# The avatar's tracks
# ---------------------------------------------------------------------------------------------------


class AvatarTracks:
    """The avatar's microphone and camera: sources, their synchronizer and their publications."""

    def __init__(self, width: int, height: int, fps: float) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.audio_source = rtc.AudioSource(AUDIO_RATE, 1, queue_size_ms=AUDIO_QUEUE_MS)
        self.video_source = rtc.VideoSource(width, height)
        self.sync = rtc.AVSynchronizer(
            audio_source=self.audio_source,
            video_source=self.video_source,
            video_fps=fps,
            video_queue_size_ms=VIDEO_QUEUE_MS,
        )
        self.audio_publication: rtc.LocalTrackPublication | None = None
        self.video_publication: rtc.LocalTrackPublication | None = None
        self.audio_frames = 0
        self.video_frames = 0

    @property
    def audio_sid(self) -> str | None:
        """The published microphone track's sid (what transcriptions point at)."""
        return self.audio_publication.sid if self.audio_publication is not None else None

    async def publish(self, participant: rtc.LocalParticipant) -> None:
        """Publish the microphone and camera tracks."""
        encoding = video_encoding(self.width, self.height, self.fps)
        self.audio_publication, self.video_publication = await publish_tracks(
            participant, self.audio_source, self.video_source, encoding
        )

    async def push(self, frame: OutputFrame) -> None:
        """One Engine frame. Audio waits while the source's 100 ms buffer is full, so this paces the
        caller at real time; video waits for its slot in the synchronizer."""
        if isinstance(frame, AudioFrame):
            end = frame.pts_s + frame.samples.size / AUDIO_RATE
            await self.sync.push(to_rtc_audio(frame.samples), timestamp=end)
            self.audio_frames += 1
        else:
            await self.sync.push(to_rtc_video(frame.image), timestamp=frame.pts_s)
            self.video_frames += 1

    def clear(self) -> None:
        """Drop audio buffered in the source (an interruption must be heard at once)."""
        self.audio_source.clear_queue()

    async def aclose(self) -> None:
        """Stop the synchronizer and free the sources."""
        await self.sync.aclose()  # cancels its capture task without waiting for it...
        await asyncio.sleep(0)  # ...which ends at the next step of the loop: no task is left behind
        await self.audio_source.aclose()
        await self.video_source.aclose()
