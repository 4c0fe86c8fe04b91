"""Room processes that are ready before their room arrives.

livekit-agents starts each room's process ahead of time and runs a setup function in it. Loading the
models there is only worth it if the room then uses what was loaded: building the parts again costs
as much as the first time (about 8 s on a 2-core machine: the ONNX and CTranslate2 sessions and the
first synthesis, not the imports). So :func:`prewarm_parts` loads the default persona's voice (with one
synthesis), the joint model, the renderer (with one frame), Whisper and the end-of-turn models, and
:func:`stack_from` assembles a room's :class:`AvatarStack` from them, exactly as
``integrations.stack.open_stack`` does from scratch. A room asking for another persona gets a fresh
``open_stack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from agent.persona import Persona
from agent.session import shared_text_turn_model, shared_turn_model
from agent.stt import WhisperSTT, make_stt
from agent.vad import StreamingVAD
from avatar_core.config import AppSettings
from avatar_core.engine import Voice
from avatar_core.listening_features import ListeningFeatures
from avatar_core.model.inference import JointModel
from avatar_core.motion import NEUTRAL
from avatar_core.render import make_renderer
from avatar_core.render.base import Renderer
from integrations.llm.local_server import LocalLLMServer
from integrations.stack import AvatarStack, LoadedParts, build_voice, open_stack

log = logging.getLogger(__name__)


@dataclass
class Prewarmed:
    """One persona's loaded parts, waiting for a room (used by one room at most)."""

    persona: Persona
    voice: Voice
    model: JointModel | None
    renderer: Renderer
    stt: WhisperSTT | None  # the bundled Whisper, loaded; a remote STT is cheap to make per room
    seconds: float = 0.0  # how long loading took


def prewarm_parts(persona: Persona, settings: AppSettings) -> Prewarmed:
    """Load ``persona``'s models and run each once (blocking; no event loop may be running)."""
    started = time.perf_counter()
    voice, model = build_voice(persona, settings)
    voice.utterance("Hello.")  # the first synthesis pays for ONNX / torch setup
    renderer = make_renderer(persona.appearance)
    renderer.render(NEUTRAL)
    turn_taking = persona.turn_taking
    StreamingVAD(turn_taking.vad_threshold, turn_taking.min_speech_ms, turn_taking.end_of_turn_silence_ms)
    if turn_taking.turn_detector == "smart_turn":
        shared_turn_model()  # the end-of-turn models are kept for the process, shared by its sessions
    if turn_taking.text_veto_below > 0:
        shared_text_turn_model()
    ListeningFeatures()  # loads the face-landmark model, which the module keeps for the process
    stt = None
    if persona.stt.backend == "whisper":
        made = make_stt(persona.stt)
        assert isinstance(made, WhisperSTT)
        asyncio.run(made.warmup())
        stt = made
    return Prewarmed(persona, voice, model, renderer, stt, time.perf_counter() - started)


@contextlib.asynccontextmanager
async def stack_from(
    parts: Prewarmed,
    *,
    server: LocalLLMServer | None = None,
    seed: int = 0,
) -> AsyncIterator[AvatarStack]:
    """The room's avatar from prewarmed parts; what ``open_stack(parts.persona, server=server)`` builds."""
    loaded = LoadedParts(parts.voice, parts.model, parts.renderer, parts.stt)
    async with open_stack(parts.persona, server=server, seed=seed, loaded=loaded) as stack:
        yield stack
