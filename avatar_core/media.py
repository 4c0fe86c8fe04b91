"""Writing avatar output to MP4 with PyAV: H.264 video and, optionally, AAC audio."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core.frames import AUDIO_RATE


def write_mp4(
    path: Path,
    images: Iterable[npt.NDArray[np.uint8]],
    fps: float,
    audio: npt.NDArray[np.int16] | None = None,
    crf: int = 20,
) -> int:
    """Encode RGB frames (H, W, 3) at ``fps`` (plus mono 24 kHz int16 ``audio``) into ``path``.

    Returns the number of video frames written. Blocking: call it from a worker thread.
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=AUDIO_RATE)
            sound.layout = "mono"
        for image in images:
            if count == 0:
                video.height, video.width = image.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
            count += 1
        for packet in video.encode():
            container.mux(packet)
        if sound is not None and audio is not None:
            chunk = 1024
            for start in range(0, audio.size, chunk):
                piece = audio[start : start + chunk].reshape(1, -1)
                sound_frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
                sound_frame.sample_rate = AUDIO_RATE
                sound_frame.pts = start
                for packet in sound.encode(sound_frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return count
