"""Sizes and training settings of the neural vocoder, validated; sizes come from a small registry.

``configs/vocoder/*.yaml`` name a registry size and override any field; ``dyad vocoder fit --config``
reads them. A checkpoint stores the resolved :class:`VocoderConfig`, so it always rebuilds its own network.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from avatar_core.speech.features import HOP
from avatar_core.speech.layout import Representation, SpeechLayout
from avatar_core.training_config import Size, SizedFitConfig, TrainSettings, load_yaml_config

Inputs = Representation  # the features a vocoder reads


class VocoderConfig(SpeechLayout):
    """Network sizes: a Vocos-style ConvNeXt stack over the 40 fps features, upsampled to ``hop``.

    ``inputs`` says which features it reads (``avatar_core/speech/layout.py``): ``world`` (WORLD
    parameters, 45 per frame) or ``mel`` (log-mel frames of the ``mel_*`` layout); a joint model is
    spoken by a vocoder that reads what it predicts."""

    inputs: Inputs = Field("world", description="the features the network reads")

    dim: int = Field(128, ge=8, description="channels of the ConvNeXt stack")
    intermediate: int = Field(384, ge=8, description="hidden width of each block's pointwise MLP")
    blocks: int = Field(6, ge=1, description="ConvNeXt blocks at the STFT frame rate")
    kernel: int = Field(7, ge=3, description="depthwise kernel (odd)")
    hop: int = Field(
        300,
        ge=50,
        description="STFT hop in samples; must divide the feature hop (600): 300 = 80 fps, 150 = 160 fps",
    )
    n_fft: int = Field(1200, ge=64, description="STFT size; 4 x hop as in Vocos")

    @model_validator(mode="after")
    def _hop_divides(self) -> VocoderConfig:
        if HOP % self.hop:
            raise ValueError(f"hop {self.hop} must divide the feature hop {HOP} (e.g. 300, 200, 150)")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel {self.kernel} must be odd")
        if self.n_fft < self.hop:
            raise ValueError(f"n_fft {self.n_fft} must be at least the hop {self.hop}")
        if self.inputs == "mel":
            self.mel_options()  # validates the mel layout
        return self

    @property
    def input_dim(self) -> int:
        """Columns of one input frame."""
        return self.width(self.inputs)

    @property
    def upsample(self) -> int:
        """STFT frames per feature frame."""
        return HOP // self.hop


SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 32, "intermediate": 64, "blocks": 2},
    "small": {"dim": 128, "intermediate": 384, "blocks": 6},
    "base": {"dim": 192, "intermediate": 576, "blocks": 8},
}


class VocoderTrainConfig(TrainSettings):
    """Optimisation settings of ``dyad vocoder fit``."""

    steps: int = Field(200_000, ge=1)
    batch_size: int = Field(8, ge=1)
    crop_frames: int = Field(32, ge=4, description="training windows of this many feature frames (40 fps)")
    lr: float = Field(5e-4, gt=0.0)
    warmup_steps: int = Field(200, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)
    mel_weight: float = Field(1.0, ge=0.0, description="weight of the multi-resolution log-mel L1")
    stft_weight: float = Field(1.0, ge=0.0, description="weight of the multi-resolution STFT loss")
    adversarial_weight: float = Field(
        0.0, ge=0.0, description="weight of the discriminators' hinge loss; 0 = no discriminators"
    )
    feature_matching_weight: float = Field(
        0.0, ge=0.0, description="weight of the discriminators' feature-matching L1 (with adversarial)"
    )
    spectrogram_discriminator: bool = Field(
        True,
        description="with adversarial: the multi-resolution spectrogram discriminator beside the"
        " multi-period one (on a CPU it triples the time of a step)",
    )
    reload_every: int = Field(1000, ge=1, description="look for new samples in a growing dataset")
    threads: int = Field(1, ge=0, description="torch threads on CPU; 0 = all cores")


class VocoderFitConfig(SizedFitConfig):
    """One YAML file of ``configs/vocoder/``."""

    size: Size = "small"
    train: VocoderTrainConfig = VocoderTrainConfig()

    def vocoder_config(self) -> VocoderConfig:
        """The registry size with this file's overrides."""
        return self.sized(SIZES, VocoderConfig)


class VocoderConfigError(ValueError):
    """A vocoder YAML that cannot be used; the message names the field and the fix."""


def load_vocoder_config(path: Path) -> VocoderFitConfig:
    """Read and validate ``configs/vocoder/<name>.yaml``."""
    return load_yaml_config(
        path,
        VocoderFitConfig,
        VocoderConfigError,
        VocoderFitConfig.vocoder_config,
        hint="see avatar_core/vocoder/config.py",
    )
