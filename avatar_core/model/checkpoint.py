"""Where the joint model's checkpoint is, and which speakers it knows, without loading torch.

The committed checkpoint is package data of ``avatar_core.assets`` (``avatar_core/assets/avflow/avflow.pt``,
its model card beside it), so a wheel carries it and :mod:`importlib.resources` finds it wherever the
package is installed; ``DYAD_MODEL`` (``AppSettings.model``) points elsewhere.

:func:`checkpoint_voices` reads the speaker list from the checkpoint's pickled header only: persona
validation asks it, and must not import torch or build the network for that.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

PACKAGE = "avatar_core.assets"
RESOURCE = "avflow/avflow.pt"  # inside the package


class ModelMissingError(FileNotFoundError):
    """No checkpoint where one was expected; the message says how to get one."""


class UnknownSpeakerError(ValueError):
    """A speaker the checkpoint was not trained on; the message lists the ones it has."""

    def __init__(self, speaker: str, voices: Sequence[str], path: Path) -> None:
        self.speaker = speaker
        self.voices = tuple(voices)
        super().__init__(
            f"the joint model {path} speaks {', '.join(self.voices)}, not {speaker!r}: set voice.speaker to "
            f"one of them, or voice.mode: cascade to speak {speaker!r} with Kokoro"
        )


def bundled_checkpoint() -> Path:
    """The checkpoint shipped inside the installed ``avatar_core`` package (it may be absent)."""
    return Path(str(resources.files(PACKAGE).joinpath(RESOURCE)))


def checkpoint_path(checkpoint: Path | None = None) -> Path:
    """The checkpoint to load: ``checkpoint`` (e.g. ``DYAD_MODEL``) or the bundled one."""
    return checkpoint or bundled_checkpoint()


class _HeaderUnpickler(pickle.Unpickler):
    """Unpickles a torch checkpoint's ``data.pkl`` without torch: tensors and storages become None.

    Only plain containers are rebuilt, so reading a header runs no code from the file."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        return _placeholder

    def persistent_load(self, pid: Any) -> None:
        return None


def _placeholder(*args: object, **kwargs: object) -> None:
    return None


def read_header(path: Path) -> dict[str, Any]:
    """The checkpoint's dict (config, step, data, ...) with every tensor replaced by None."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if name is None:
                raise ValueError(f"{path}: not a torch checkpoint (no data.pkl inside)")
            with archive.open(name) as f:
                state = _HeaderUnpickler(f).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the checkpoint ({exc})") from exc
    if not isinstance(state, dict) or "model_config" not in state:
        raise ValueError(f"{path}: not a dyad checkpoint (no model_config)")
    return state


def checkpoint_voices(path: Path) -> tuple[str, ...]:
    """The speakers a checkpoint was trained on, in speaker-index order (reads a few KB, no torch)."""
    voices = read_header(path)["model_config"].get("voices")
    if not voices:
        raise ValueError(f"{path}: the checkpoint's model_config lists no voices")
    return tuple(str(v) for v in voices)


def check_speaker(speaker: str, voices: Sequence[str], path: Path) -> str:
    """``speaker`` if the checkpoint knows it, else :class:`UnknownSpeakerError` listing ``voices``."""
    if speaker not in voices:
        raise UnknownSpeakerError(speaker, voices, path)
    return speaker
