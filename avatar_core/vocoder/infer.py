"""The trained vocoder at inference: a drop-in for ``features.synthesize``, whole or in streamed chunks.

The joint model's speech features become audio through a :data:`SpeechVocoder`: the trained network
(:class:`NeuralVocoder`, the bundled checkpoint ``avatar_core/assets/vocoder/vocoder.pt`` by default) or
``pyworld`` (:class:`WorldVocoder`); :func:`load_speech_vocoder` picks one by name (``DYAD_VOCODER``).
``NeuralVocoder.synthesize(features)`` turns WORLD features (T, F) into 24 kHz audio (T * 600,), as
``features.synthesize`` does. ``StreamingVocoder`` vocodes a joint-model stream chunk by chunk: each
chunk is run with ``context`` frames of the past and ``lookahead`` frames of the future around it, so
with both at the network's receptive field the streamed audio equals the whole-utterance audio.

A vocoder reads WORLD features or log-mel frames (``inputs``, ``avatar_core/speech/layout.py``), the kind
its joint model predicts; :meth:`NeuralVocoder.analyze` turns audio into its features (to measure a
representation's ceiling, ``bench/ceiling.py``).

Letters in shape comments: T feature frames (40 fps), F the vocoder's input columns (``FEATURE_DIM``
for WORLD), S samples (T * 600).
"""

from __future__ import annotations

import math
import time
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from avatar_core.speech import features as world
from avatar_core.speech.features import HOP, MODEL_FPS, SAMPLE_RATE
from avatar_core.vocoder.config import Inputs
from avatar_core.vocoder.model import Vocoder
from avatar_core.vocoder.train import load_vocoder

FloatArray = npt.NDArray[np.float32]
VocoderName = Literal["neural", "world"]
VOCODERS: tuple[VocoderName, ...] = ("neural", "world")
PACKAGE = "avatar_core.assets"
# inside the package, beside their model card: one bundled vocoder per feature kind a joint model predicts
RESOURCES: dict[Inputs, str] = {"world": "vocoder/vocoder.pt", "mel": "vocoder/vocoder_mel.pt"}


def bundled_vocoder(inputs: Inputs = "world") -> Path:
    """The checkpoint shipped inside the installed ``avatar_core`` package of the vocoder that reads
    ``inputs`` features (it may be missing: a package ships the vocoders its joint models need)."""
    return Path(str(resources.files(PACKAGE).joinpath(RESOURCES[inputs])))


class NeuralVocoder:
    """A trained :class:`Vocoder` on the CPU, in inference mode."""

    name: VocoderName = "neural"

    def __init__(self, model: Vocoder, threads: int = 0) -> None:
        self.model = model.eval()
        self.threads = threads

    @classmethod
    def load(cls, path: Path, threads: int = 0) -> NeuralVocoder:
        """From a ``dyad vocoder fit`` checkpoint; ``threads`` > 0 sets torch's CPU threads."""
        if not path.is_file():
            raise ValueError(f"{path}: no such vocoder checkpoint; train one with `dyad vocoder fit`")
        model, _ = load_vocoder(path)
        return cls(model, threads)

    @property
    def inputs(self) -> Inputs:
        """The features it reads: ``world`` or ``mel``."""
        return self.model.config.inputs

    @property
    def layout(self) -> str:
        """The layout name of the features it reads (``world``, or e.g. ``mel80x1/1200``)."""
        c = self.model.config
        return c.name(c.inputs)

    @property
    def follows_pitch(self) -> bool:
        """Whether speech shifted by ``SpeechLayout.shift_pitch`` comes out at the shifted pitch. A mel
        vocoder does (within 0.4 semitones over +-4 in the high voices, less in the low ``jm_kumo``;
        ``bench/pitch.py``). A WORLD one does not: measured on the joint model's output, a +4 semitone F0
        shift came out as +1.4 to +2.3 (it learned each voice's pitch range from the envelope too), so a
        WORLD model's shifted pitch is rendered by pyworld instead."""
        return self.inputs == "mel"

    @property
    def feature_dim(self) -> int:
        """Columns of one input frame."""
        return self.model.config.input_dim

    def analyze(self, audio: npt.NDArray[np.float32]) -> FloatArray:
        """24 kHz speech (S,) -> the features this vocoder reads (T, F)."""
        c = self.model.config
        return c.analyze(c.inputs, audio)

    @property
    def receptive_frames(self) -> int:
        """Feature frames on each side that can change one frame's audio."""
        c = self.model.config
        half = c.kernel // 2
        # the ConvNeXt blocks, the inverse STFT's window overlap and the upsampling's two taps
        stft_frames = c.blocks * half + math.ceil(c.n_fft / 2 / c.hop) + 2
        return half + math.ceil(stft_frames / c.upsample)

    def synthesize(self, features: npt.NDArray[np.floating]) -> FloatArray:
        """Features (T, F) -> 24 kHz float audio (T * 600,) in [-1, 1]."""
        feats = np.asarray(features, np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"{self.inputs} features for this vocoder must have shape (T, {self.feature_dim}),"
                f" got {feats.shape}"
            )
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            audio = self.model(torch.from_numpy(feats)[None])[0]  # (S,)
        out: FloatArray = audio.clamp(-1.0, 1.0).numpy().astype(np.float32)
        return out

    def measure_rtf(self, seconds: float = 10.0, repeats: int = 3) -> dict[str, float]:
        """Best-of-``repeats`` compute seconds per audio second on ``seconds`` of random-walk features."""
        frames = max(1, round(seconds * MODEL_FPS))
        rng = np.random.default_rng(0)
        mean = self.model.mean.numpy()
        std = self.model.std.numpy()
        feats = (mean + std * rng.standard_normal((frames, self.feature_dim)) * 0.3).astype(np.float32)
        self.synthesize(feats[: min(frames, 40)])  # warm-up
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            self.synthesize(feats)
            best = min(best, time.perf_counter() - start)
        return {
            "rtf": round(best * SAMPLE_RATE / (frames * HOP), 5),
            "audio_s": frames / MODEL_FPS,
            "threads": torch.get_num_threads(),
        }


class WorldVocoder:
    """``pyworld`` synthesis of the same features (no training; the representation's own decoder)."""

    name: VocoderName = "world"
    follows_pitch = True  # WORLD synthesises exactly the F0 it is given
    inputs: Inputs = "world"
    layout = "world"

    def synthesize(self, features: npt.NDArray[np.floating]) -> FloatArray:
        """WORLD features (T, F) -> 24 kHz float audio (T * 600,) in [-1, 1]."""
        return world.synthesize(features)


SpeechVocoder = NeuralVocoder | WorldVocoder


def load_speech_vocoder(
    name: VocoderName = "neural", checkpoint: Path | None = None, threads: int = 0, inputs: Inputs = "world"
) -> SpeechVocoder:
    """The vocoder called ``name`` for ``inputs`` features; ``checkpoint`` replaces the bundled network
    (``neural`` only)."""
    if name == "world":
        if checkpoint is not None:
            raise ValueError("a vocoder checkpoint was given with vocoder 'world'; use vocoder 'neural'")
        if inputs != "world":
            raise ValueError(f"pyworld cannot speak {inputs} features; use vocoder 'neural'")
        return WorldVocoder()
    if name != "neural":
        raise ValueError(f"unknown vocoder {name!r}; use one of {', '.join(VOCODERS)}")
    path = checkpoint or bundled_vocoder(inputs)
    if checkpoint is None and not path.is_file():
        raise ValueError(
            f"this package has no bundled vocoder for {inputs} features ({path}); give one trained on"
            " them (`dyad vocoder fit` with that layout) with DYAD_VOCODER_CHECKPOINT, or --vocoder"
            " where a command has it"
        )
    return NeuralVocoder.load(path, threads)


class StreamingVocoder:
    """Chunks of features in, their audio out, with ``context`` past and ``lookahead`` future frames.

    ``push`` returns the audio of every frame that now has ``lookahead`` frames after it; ``flush`` the
    rest at the end of the utterance. Latency added: ``lookahead`` frames (25 ms each).
    """

    def __init__(
        self, vocoder: NeuralVocoder, context: int | None = None, lookahead: int | None = None
    ) -> None:
        self.vocoder = vocoder
        reach = vocoder.receptive_frames
        self.context = reach if context is None else context
        self.lookahead = reach if lookahead is None else lookahead
        self._dim = vocoder.feature_dim
        self._buffer = np.zeros((0, self._dim), np.float32)  # (n, F) the frames still needed
        self._offset = 0  # stream index of the buffer's first frame
        self._done = 0  # stream index of the first frame whose audio has not been returned

    @property
    def _total(self) -> int:
        return self._offset + self._buffer.shape[0]

    def push(self, features: npt.NDArray[np.floating]) -> FloatArray:
        """Add (t, F) features; returns the audio (n * 600,) of the frames ready now (n may be 0)."""
        chunk = np.asarray(features, np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != self._dim:
            raise ValueError(f"speech features must have shape (t, {self._dim}), got {chunk.shape}")
        self._buffer = np.concatenate([self._buffer, chunk])
        return self._emit(self._total - self.lookahead)

    def flush(self) -> FloatArray:
        """The audio of every frame not returned yet; the stream is then empty again."""
        out = self._emit(self._total)
        self._buffer = np.zeros((0, self._dim), np.float32)
        self._offset = self._done = 0
        return out

    def _emit(self, stop: int) -> FloatArray:
        if stop <= self._done:
            return np.zeros(0, np.float32)
        first = max(self._offset, self._done - self.context)
        last = min(self._total, stop + self.lookahead)
        audio = self.vocoder.synthesize(self._buffer[first - self._offset : last - self._offset])
        out = audio[(self._done - first) * HOP : (stop - first) * HOP]  # ((stop - done) * 600,)
        self._done = stop
        keep_from = max(self._offset, stop - self.context)  # earlier frames are never needed again
        self._buffer = self._buffer[keep_from - self._offset :]
        self._offset = keep_from
        return out
