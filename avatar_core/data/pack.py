"""A dataset folder's training features in one small file, to train on another machine.

:func:`pack` keeps what the joint model trains on (each sample's manifest fields, tokens, durations, speech
features in one layout, motion and partner conditioning) and leaves the audio out: WORLD features as stored,
or the log-mel frames a mel model learns, made from the audio (about 1.5 times WORLD's bytes). Each feature
array is stored as float16, channel-major with the two bytes of every value in separate planes, then
LZMA-compressed: about 9 MB per hour of data with WORLD features, where the folder holds about 200 MB
(docs/design.md, "Training on a borrowed GPU").
:func:`unpack` writes the samples back as a folder (without audio) that ``dyad train fit`` reads.

Letters in shape comments: T model frames summed over samples, C channels.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avatar_core.data.samples import DatasetError, Sample, append_manifest, iter_samples
from avatar_core.files import replacing
from avatar_core.speech.features import MODEL_FPS

FEATURES = ("speech", "motion", "partner")
PACK_VERSION = 1


def _encode(values: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """(T, C) float32 -> LZMA bytes of float16, channel-major, byte planes apart."""
    half = np.ascontiguousarray(values.astype(np.float16).T)  # (C, T)
    planes = half.view(np.uint8).reshape(-1, 2).T  # (2, C * T): low bytes, then high bytes
    return np.frombuffer(lzma.compress(planes.tobytes(), preset=6), np.uint8)


def _decode(blob: npt.NDArray[np.uint8], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Inverse of :func:`_encode` for an array of ``shape`` (T, C)."""
    frames, channels = shape
    planes = np.frombuffer(lzma.decompress(blob.tobytes()), np.uint8).reshape(2, -1)
    half = np.ascontiguousarray(planes.T).view(np.float16).reshape(channels, frames)  # (C, T)
    return np.ascontiguousarray(half.T).astype(np.float32)


def pack(folder: Path, out: Path, layout: str = "world") -> tuple[int, float]:
    """Write the training features of every sample in ``folder`` to ``out``, the speech in ``layout`` (a
    layout name, ``avatar_core.speech.layout``: a mel model's frames are made from the audio here, since
    the pack has no audio); returns (samples, hours)."""
    samples = [
        dataclasses.replace(s, speech=s.speech_in(layout), speech_layout=layout, audio=None)
        for s in iter_samples(folder)
    ]
    if not samples:
        raise DatasetError(f"{folder} holds no samples; run `dyad train data --out {folder}` first")
    metas = [{**s.meta(), "tokens": int(s.tokens.size)} for s in samples]
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "version": np.array(PACK_VERSION),
        "meta": np.array(json.dumps(metas, ensure_ascii=False)),
        "tokens": np.concatenate([s.tokens for s in samples]).astype(np.int32),
        "durations": np.concatenate([s.durations for s in samples]).astype(np.int32),
    }
    for key in FEATURES:
        arrays[key] = _encode(np.concatenate([getattr(s, key) for s in samples]))  # (T, C) encoded
        arrays[f"{key}_channels"] = np.array(getattr(samples[0], key).shape[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out, ".npz") as tmp:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stubs type savez **kwds as its flags
    frames = sum(s.frames for s in samples)
    return len(samples), frames / MODEL_FPS / 3600.0


def unpack(src: Path, folder: Path) -> int:
    """Write the samples packed in ``src`` into ``folder`` (created) as ``.npz`` files; returns the count."""
    try:
        with np.load(src) as data:
            if int(data["version"]) != PACK_VERSION:
                raise DatasetError(f"{src}: pack version {int(data['version'])}, expected {PACK_VERSION}")
            metas = json.loads(str(data["meta"]))
            tokens, durations = data["tokens"].astype(np.int64), data["durations"].astype(np.int64)
            frames = sum(int(m["frames"]) for m in metas)
            features = {key: _decode(data[key], (frames, int(data[f"{key}_channels"]))) for key in FEATURES}
    except (OSError, KeyError, ValueError, lzma.LZMAError) as exc:
        raise DatasetError(f"{src}: not a packed dataset ({exc}); make one with `dyad train pack`") from exc
    folder.mkdir(parents=True, exist_ok=True)
    at_token = at_frame = 0
    for meta in metas:
        n, t = int(meta["tokens"]), int(meta["frames"])
        sample = Sample.from_meta(
            meta,
            tokens=tokens[at_token : at_token + n],
            durations=durations[at_token : at_token + n],
            speech=features["speech"][at_frame : at_frame + t],
            motion=features["motion"][at_frame : at_frame + t],
            partner=features["partner"][at_frame : at_frame + t],
        )
        sample.save(folder)
        append_manifest(folder, sample.meta())
        at_token, at_frame = at_token + n, at_frame + t
    return len(metas)
