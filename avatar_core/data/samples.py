"""One training sample of the joint model, and a folder of them (a dataset).

Every source of data (the teacher, a user's recordings) writes the same thing: an ``.npz`` per utterance
with the phoneme tokens and their durations in model frames, and per model frame (40 fps) the actor's
speech features, the actor's motion and the partner's conditioning vector. A speaking sample has the
actor speaking and the partner listening silently; a listening sample has the partner speaking and the
actor listening (its tokens are a single pad token that lasts the whole sample).

Letters in shape comments: N tokens, T model frames, F speech features, D motion fields, P partner dims.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from avatar_core.files import replacing
from avatar_core.motion import MOTION_DIM
from avatar_core.partner import PARTNER_DIM
from avatar_core.speech.features import HOP
from avatar_core.speech.layout import parse_layout

Role = Literal["speak", "listen"]
MANIFEST = "manifest.jsonl"
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """A sample or dataset folder that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Sample:
    """One utterance (speaking) or one stretch of listening."""

    name: str
    text: str
    voice: str
    role: Role
    source: str  # "teacher" or "video:<file name>"
    tokens: IntArray  # (N,) phoneme ids, avatar_core.text.frontend.VOCAB
    durations: IntArray  # (N,) model frames per token; sums to T
    speech: FloatArray  # (T, F) speech features in ``speech_layout`` (GTA: the model's prediction)
    motion: FloatArray  # (T, D) motion frames at 40 fps
    partner: FloatArray  # (T, P) avatar_core.partner.partner_vector per frame
    # (T * HOP,) int16 24 kHz speech the features were analysed from: the actor's (speak) or the
    # partner's (listen). Kept so a new speech representation or vocoder is trained from the same data
    # without running the teacher again; None in samples written before it was stored.
    audio: npt.NDArray[np.int16] | None = None
    # The layout of ``speech`` (``avatar_core.speech.layout``: "world", or log-mel frames such as
    # "mel80x1/1200" in a packed dataset for a mel model or the GTA pairs of one).
    speech_layout: str = "world"

    @property
    def speech_width(self) -> int:
        """Columns ``speech`` must have in its layout."""
        try:
            kind, layout = parse_layout(self.speech_layout)
        except ValueError as exc:
            raise DatasetError(f"sample {self.name}: {exc}") from None
        return layout.width(kind)

    def speech_in(self, layout: str) -> FloatArray:
        """The speech features (T, F) of this sample in ``layout`` (a layout name): the stored ones when
        they are in it, else analysed from the stored audio, or silence while the actor listens (the
        audio of a listening sample is the partner's)."""
        if layout == self.speech_layout:
            return self.speech
        kind, spec = parse_layout(layout)
        if self.role == "listen":
            return spec.silence(kind, self.frames)
        if self.audio is None:
            raise DatasetError(
                f"sample {self.name} has {self.speech_layout} speech features and no stored audio to make"
                f" {layout} ones from; write the dataset again with `dyad train data` (it keeps the audio),"
                f" or pack it for that layout (`dyad train pack --config` a config that predicts it)"
            )
        return spec.analyze(kind, self.audio.astype(np.float32) / 32768.0)

    @property
    def frames(self) -> int:
        """Model frames T."""
        return int(self.speech.shape[0])

    def check(self) -> None:
        """Raise :class:`DatasetError` naming the first inconsistency."""
        t = self.frames
        shapes = {
            "speech": (self.speech.shape, (t, self.speech_width)),
            "motion": (self.motion.shape, (t, MOTION_DIM)),
            "partner": (self.partner.shape, (t, PARTNER_DIM)),
            "durations": (self.durations.shape, self.tokens.shape),
        }
        for key, (got, want) in shapes.items():
            if tuple(got) != tuple(want):
                raise DatasetError(
                    f"sample {self.name}: {key} has shape {tuple(got)}, expected {tuple(want)}"
                )
        if int(self.durations.sum()) != t:
            raise DatasetError(
                f"sample {self.name}: durations sum to {int(self.durations.sum())}, not {t} frames"
            )
        if self.audio is not None and self.audio.shape != (t * HOP,):
            raise DatasetError(
                f"sample {self.name}: audio has {self.audio.size} samples, expected {t * HOP} ({t} frames)"
            )
        for key in ("speech", "motion", "partner"):
            if not np.isfinite(getattr(self, key)).all():
                raise DatasetError(f"sample {self.name}: {key} holds NaN or infinite values")

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], **arrays: Any) -> Sample:
        """A sample from its manifest fields (:meth:`meta`) and its arrays (``tokens`` ... ``audio``)."""
        return cls(
            name=meta["name"],
            text=meta["text"],
            voice=meta["voice"],
            role=meta["role"],
            source=meta["source"],
            speech_layout=meta.get("speech_layout", "world"),
            **arrays,
        )

    def meta(self) -> dict[str, object]:
        """The manifest line of this sample (the speech layout only when it is not WORLD's)."""
        meta: dict[str, object] = {
            "name": self.name,
            "text": self.text,
            "voice": self.voice,
            "role": self.role,
            "source": self.source,
            "frames": self.frames,
        }
        if self.speech_layout != "world":
            meta["speech_layout"] = self.speech_layout
        return meta

    def save(self, folder: Path) -> Path:
        """Write ``folder/<name>.npz`` atomically."""
        self.check()
        path = folder / f"{self.name}.npz"
        arrays: dict[str, npt.NDArray[Any]] = {
            "meta": np.array(json.dumps(self.meta())),
            "tokens": self.tokens.astype(np.int64),
            "durations": self.durations.astype(np.int64),
            "speech": self.speech.astype(np.float32),
            "motion": self.motion.astype(np.float32),
            "partner": self.partner.astype(np.float32),
        }
        if self.audio is not None:
            arrays["audio"] = self.audio.astype(np.int16)
        with replacing(path, ".npz") as tmp:
            np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stubs type savez **kwds as its flags
        return path


def load_sample(path: Path) -> Sample:
    """Read one ``.npz`` written by :meth:`Sample.save`."""
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            sample = Sample.from_meta(
                meta,
                tokens=data["tokens"].astype(np.int64),
                durations=data["durations"].astype(np.int64),
                speech=data["speech"].astype(np.float32),
                motion=data["motion"].astype(np.float32),
                partner=data["partner"].astype(np.float32),
                audio=data["audio"].astype(np.int16) if "audio" in data.files else None,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(
            f"{path}: not a dyad sample ({exc}); delete it and run `dyad train data` again"
        ) from exc
    sample.check()
    return sample


def sample_paths(folder: Path) -> list[Path]:
    """The finished samples in a dataset folder, in name order."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: no such dataset folder; make one with `dyad train data --out {folder}`"
        )
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))


def iter_samples(folder: Path) -> Iterator[Sample]:
    """Every sample in ``folder``, loaded one at a time."""
    for path in sample_paths(folder):
        yield load_sample(path)


def append_manifest(folder: Path, meta: Mapping[str, object]) -> None:
    """Add a sample's line (:meth:`Sample.meta`) to ``manifest.jsonl`` (a readable index; the ``.npz``
    files are the truth)."""
    with open(folder / MANIFEST, "a", encoding="utf-8") as f:
        f.write(json.dumps(meta, ensure_ascii=False) + "\n")
