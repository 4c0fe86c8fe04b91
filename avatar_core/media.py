"""Reading and writing media with PyAV: H.264 + AAC MP4 output, any audio/video file as input."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from avatar_core.frames import AUDIO_RATE

_AAC_FRAME = 1024


class Mp4Writer:
    """Streams RGB frames and mono int16 audio into an MP4 as they are produced (nothing is held)."""

    def __init__(self, path: Path, fps: float, audio: bool = True, crf: int = 20) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.container: Any = av.open(str(path), mode="w")
        self.video: Any = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        self.video.pix_fmt = "yuv420p"
        self.video.options = {"crf": str(crf), "preset": "veryfast"}
        self.sound: Any = None
        if audio:
            self.sound = self.container.add_stream("aac", rate=AUDIO_RATE)
            self.sound.layout = "mono"
        self.frames = 0
        self._pending = np.zeros(0, np.int16)
        self._audio_pts = 0

    def write_video(self, image: npt.NDArray[np.uint8]) -> None:
        """Append one RGB frame (H, W, 3); the first frame fixes the size."""
        import av

        if self.frames == 0:
            self.video.height, self.video.width = image.shape[:2]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def write_audio(self, samples: npt.NDArray[np.int16]) -> None:
        """Append mono 24 kHz int16 audio."""
        self._pending = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        while self._pending.size >= _AAC_FRAME:
            self._encode(self._pending[:_AAC_FRAME])
            self._pending = self._pending[_AAC_FRAME:]

    def _encode(self, piece: npt.NDArray[np.int16]) -> None:
        import av

        frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._audio_pts
        self._audio_pts += piece.size
        for packet in self.sound.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        for packet in self.video.encode():
            self.container.mux(packet)
        if self.sound is not None:
            if self._pending.size:
                self._encode(self._pending)
            for packet in self.sound.encode():
                self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_mp4(
    path: Path,
    images: Iterable[npt.NDArray[np.uint8]],
    fps: float,
    audio: npt.NDArray[np.int16] | None = None,
) -> int:
    """Encode RGB frames at ``fps`` (plus mono 24 kHz int16 ``audio``) into ``path``; returns the frame
    count. Blocking: call it from a worker thread when on an event loop."""
    with Mp4Writer(path, fps, audio=audio is not None) as writer:
        for image in images:
            writer.write_video(image)
        if audio is not None:
            writer.write_audio(audio)
        return writer.frames


class MediaError(ValueError):
    """An input file cannot be read."""


def _open(path: Path, kind: str) -> Any:
    """A PyAV input container, or a :class:`MediaError` saying why it cannot be read."""
    import av

    try:
        return av.open(str(path))
    except (OSError, av.error.FFmpegError) as exc:
        raise MediaError(f"cannot read {kind} from {path}: {exc}") from None


def read_audio(path: Path, sample_rate: int) -> npt.NDArray[np.float32]:
    """All audio of a file, mixed to mono and resampled to ``sample_rate``, float32 in [-1, 1]."""
    import av

    with _open(path, "audio") as container:
        if not container.streams.audio:
            raise MediaError(f"{path} has no audio stream; give a WAV, MP3, M4A or a video with sound")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def video_frames(path: Path) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """``(time in seconds, RGB frame)`` for each frame of a video file, decoded lazily."""
    with _open(path, "video") as container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream")
        stream = container.streams.video[0]
        start = stream.start_time or 0
        base = stream.time_base or Fraction(1, 1000)
        for frame in container.decode(stream):
            t = float((frame.pts - start) * base) if frame.pts is not None else 0.0
            yield t, np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
