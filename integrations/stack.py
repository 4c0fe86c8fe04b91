"""Assemble the whole avatar for one conversation: LLM endpoint (embedded or configured), STT, voice,
renderer, Engine and Session, and take it all down again. Every transport starts here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from agent.llm import ChatLLM
from agent.persona import EMBEDDED, Persona
from agent.session import Session
from agent.stt import STT, make_stt
from avatar_core.cascade import CascadeVoice
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, RealClock, VirtualClock, Voice
from avatar_core.joint import JointVoice
from avatar_core.model.inference import JointModel, ModelMissingError
from avatar_core.render.base import Renderer, make_renderer
from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The avatar cannot be assembled from this persona on this machine."""


@dataclass
class AvatarStack:
    """The running parts of one avatar."""

    persona: Persona
    engine: Engine
    session: Session
    stt: STT
    llm: ChatLLM
    server: LocalLLMServer | None


def build_voice(
    persona: Persona, settings: AppSettings, mode: Literal["joint", "cascade"] | None = None
) -> tuple[Voice, JointModel | None]:
    """The persona's voice and the audio-driven motion model (blocking: loads models).

    joint: the AV-Flow checkpoint speaks and moves the face. cascade: Kokoro speaks; the face follows the
    audio through the checkpoint's audio-driven mode. Without a checkpoint both fall back to Kokoro with
    the procedural teacher, and say so.
    """
    mode = mode or persona.voice.mode
    fps = persona.appearance.video.fps
    try:
        model: JointModel | None = JointModel(settings.model)
    except ModelMissingError as exc:
        log.warning("%s; speaking with Kokoro and the procedural teacher instead", exc)
        model = None
    if mode == "joint" and model is not None:
        if persona.voice.speaker not in model.voices:
            log.warning(
                "the joint model speaks %s, not %s; using %s",
                model.voices,
                persona.voice.speaker,
                model.voices[0],
            )
        return JointVoice(persona.voice, fps, model), model
    return CascadeVoice(persona.voice, persona.behaviour, fps, settings.cache_dir, driver=model), model


@dataclass
class LoadedParts:
    """Models already loaded for a persona (a prewarmed process), used instead of loading them again."""

    voice: Voice
    model: JointModel | None
    renderer: Renderer
    stt: STT | None = None


@contextlib.asynccontextmanager
async def open_stack(
    persona: Persona,
    settings: AppSettings | None = None,
    *,
    virtual: bool = False,
    seed: int = 0,
    server: LocalLLMServer | None = None,
    loaded: LoadedParts | None = None,
) -> AsyncIterator[AvatarStack]:
    """Build the avatar; ``virtual`` runs it on a virtual clock (offline files).

    With ``llm.base_url: embedded`` the bundled SmolLM2 server is started here (or ``server`` is reused,
    so several sessions in one process share it) and stopped on exit. ``loaded`` parts (the persona's,
    loaded ahead of time) are used instead of loading the voice, model, renderer and STT again.
    """
    settings = settings or AppSettings()
    if persona.voice.mode == "cascade" and persona.voice.cascade_tts == "openai":
        raise StackError("voice.cascade_tts 'openai' is not available yet; use 'kokoro'")
    own_server = None
    api_key = None
    base_url = persona.llm.base_url
    if base_url == EMBEDDED:
        if server is None:
            server = own_server = LocalLLMServer()
            await server.start()
        base_url, api_key = server.base_url, LOCAL_API_KEY
    stt = loaded.stt if loaded is not None and loaded.stt is not None else make_stt(persona.stt)
    llm = ChatLLM(persona.llm, base_url, api_key, seed=seed)
    fps = persona.appearance.video.fps
    if loaded is not None:
        voice, driver, renderer = loaded.voice, loaded.model, loaded.renderer
    else:
        (voice, driver), renderer = await asyncio.gather(
            asyncio.to_thread(build_voice, persona, settings),
            asyncio.to_thread(make_renderer, persona.appearance),
        )
    clock = VirtualClock() if virtual else RealClock()
    engine = Engine(
        voice, renderer, persona.behaviour, fps=fps, clock=clock, seed=seed, driver=driver, listener=driver
    )
    session = Session(persona, engine, stt, llm)
    try:
        yield AvatarStack(persona, engine, session, stt, llm, server)
    finally:
        await session.aclose()
        await engine.aclose()
        await llm.aclose()
        await stt.aclose()
        if own_server is not None:
            await own_server.stop()
