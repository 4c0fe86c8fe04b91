"""Sizes and training settings of the joint model, validated; sizes come from a small registry.

``configs/model/*.yaml`` name a registry size and override any field; ``dyad train fit --config`` reads
them. A checkpoint stores the resolved :class:`ModelConfig`, so it always rebuilds its own network.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from avatar_core.config import KOKORO_VOICES
from avatar_core.speech.layout import Representation, SpeechLayout
from avatar_core.training_config import Size, SizedFitConfig, TrainSettings, load_yaml_config

# Euler steps at inference. AV-Flow uses 8; this checkpoint speaks as clearly with 4 (held-out WER 0.150
# against 0.154 at 8, 0.152 at 6; model card, "Euler steps") at half the network's time.
EULER_STEPS = 4


class ModelConfig(SpeechLayout):
    """Network sizes (AV-Flow adapted to a CPU; docs/design.md, "The joint model").

    ``speech`` is what the speech tower predicts (``avatar_core/speech/layout.py``): WORLD parameters or
    log-mel frames of the ``mel_*`` layout, which a vocoder trained on the same layout speaks."""

    speech: Representation = Field("world", description="the speech features the model predicts")
    d_model: int = Field(128, ge=16, description="width of both DiT towers and the text encoder")
    heads: int = Field(4, ge=1)
    blocks: int = Field(4, ge=1, description="DiT blocks per tower; a highway fusion follows each")
    text_layers: int = Field(3, ge=1, description="transformer layers of the phoneme encoder")
    ff_mult: int = Field(3, ge=1)
    window: int = Field(32, ge=4, description="attention window in frames (each frame sees +-window/2)")
    head_latent: int = Field(4, ge=1, description="channels of the head-pose VAE latent per frame")
    dropout: float = Field(0.05, ge=0.0, le=0.5)
    voices: tuple[str, ...] = Field(("jf_alpha",), min_length=1, description="speakers the model knows")
    noise_scale: float = Field(1.0, gt=0.0, description="std of the flow's source noise around the prior")
    speech_weight: float = Field(1.0, gt=0.0, description="flow loss weight of the speech output")
    motion_weight: float = Field(0.5, gt=0.0, description="flow loss weight of the motion output")
    audio_driven_p: float = Field(0.2, ge=0.0, le=1.0, description="share of steps trained audio-driven")

    @model_validator(mode="after")
    def _layout(self) -> ModelConfig:
        if self.speech == "mel":
            self.mel_options()  # validates the mel layout, naming the field
        return self

    @property
    def speech_dim(self) -> int:
        """Columns of one predicted speech frame."""
        return self.width(self.speech)

    def same_network_but_speech(self, other: ModelConfig) -> bool:
        """Whether ``other`` differs from this config at most in the speech features (a warm start can
        then keep every weight but the speech tower's input and output layers)."""
        speech_fields = {"speech", *SpeechLayout.model_fields}
        return self.model_dump(exclude=speech_fields) == other.model_dump(exclude=speech_fields)


SIZES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 32, "heads": 2, "blocks": 2, "text_layers": 1, "window": 8, "ff_mult": 2},
    "small": {"d_model": 96, "heads": 4, "blocks": 3, "text_layers": 2, "window": 32},
    "base": {"d_model": 128, "heads": 4, "blocks": 4, "text_layers": 3, "window": 32},
}


class TrainConfig(TrainSettings):
    """Optimisation settings of ``dyad train fit``."""

    crop_frames: int = Field(160, ge=8, description="training windows of this many frames (40 fps)")
    vae_steps: int = Field(400, ge=0, description="head-pose VAE pre-training steps")
    ema_decay: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="save a moving average of the weights (this decay per step) as the network; 0 = none",
    )


class FitConfig(SizedFitConfig):
    """One YAML file of ``configs/model/``."""

    size: Size = "base"
    train: TrainConfig = TrainConfig()

    def model_config_(self) -> ModelConfig:
        """The registry size with this file's overrides."""
        return self.sized(SIZES, ModelConfig)


class ModelConfigError(ValueError):
    """A model/training YAML that cannot be used; the message names the field and the fix."""


def load_fit_config(path: Path) -> FitConfig:
    """Read and validate ``configs/model/<name>.yaml``."""
    config = load_yaml_config(
        path, FitConfig, ModelConfigError, FitConfig.model_config_, read_what="it as YAML"
    )
    unknown = [v for v in config.model_config_().voices if v not in KOKORO_VOICES]
    if unknown:
        raise ModelConfigError(f"{path}: model.voices {unknown} are not Kokoro voices; use {KOKORO_VOICES}")
    return config
