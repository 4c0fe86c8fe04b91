"""Training settings shared by the joint model and the vocoder, and the loader of their YAML files.

Each network's ``config.py`` subclasses :class:`TrainSettings` (changing defaults, adding its own fields)
and :class:`SizedFitConfig` (its size registry and its ``train`` section), and reads its YAML with
:func:`load_yaml_config`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import Field, ValidationError

from avatar_core.config import StrictModel

Size = Literal["tiny", "small", "base"]
_Net = TypeVar("_Net", bound=StrictModel)


class TrainSettings(StrictModel):
    """Optimisation settings every training loop reads (``avatar_core.training``)."""

    steps: int = Field(20_000, ge=1)
    batch_size: int = Field(16, ge=1)
    crop_frames: int = Field(160, ge=4, description="training windows of this many frames (40 fps)")
    lr: float = Field(1e-3, gt=0.0)
    warmup_steps: int = Field(300, ge=0)
    weight_decay: float = Field(0.01, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    checkpoint_every: int = Field(250, ge=1)
    log_every: int = Field(25, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, description="torch threads on CPU; 0 = all cores")
    time_limit_min: float = Field(
        0.0,
        ge=0.0,
        description="stop (with a checkpoint) after this many minutes, the lr decayed over them; 0 = none",
    )


class SizedFitConfig(StrictModel):
    """One training YAML: a registry ``size``, ``model`` overrides of its fields and a ``train`` section."""

    size: Size = "base"
    model: dict[str, object] = Field(default_factory=dict, description="overrides of the size's fields")
    train: TrainSettings = TrainSettings()

    def sized(self, sizes: dict[str, dict[str, int]], network: type[_Net]) -> _Net:
        """The registry size with this file's overrides, validated as ``network``."""
        return network.model_validate({**sizes[self.size], **self.model})


_Fit = TypeVar("_Fit", bound=SizedFitConfig)


def load_yaml_config(
    path: Path,
    schema: type[_Fit],
    error: type[ValueError],
    check: Callable[[_Fit], object],
    *,
    read_what: str = "it",
    hint: str = "",
) -> _Fit:
    """Read ``path`` and validate it as ``schema``, then run ``check`` (which validates the network).

    Any problem raises ``error`` with a message that names the file and each bad field;
    ``hint`` (e.g. where the fields are documented) is appended to validation messages.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read {read_what} ({exc})") from exc
    try:
        config = schema.model_validate(raw)
        check(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        raise error(f"{path}: {problems}{f' ({hint})' if hint else ''}") from None
    return config
