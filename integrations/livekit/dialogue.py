"""Two avatars live in one LiveKit room: ``dyad livekit dialogue --room ROOM --personas A B``.

Each avatar is its own participant: its own connection, identity and join token (minted per persona
identity, as ``join`` does), its own tracks, ``lk.agent.state`` attribute and ``lk.transcription``
streams, and its own Session. A :class:`DialogueAvatar` is a :class:`~integrations.livekit.room.RoomAvatar`
with two additions:

* **It perceives the other avatar.** Both run in this process, so each one's output frames are handed to
  the other as they are published (no decoding of what the room sends back): the other's voice through
  a VAD and the listening features, its face motion as a camera would read it
  (:class:`~integrations.files.dialogue.AvatarPartner`, as in the offline scene). The listening
  behaviour follows the person while the person speaks, and the other avatar while it speaks and the
  person does not (:class:`RoomListening`). The other avatar's speech is never a turn to answer: it
  reaches the listening features only, not the Session's VAD or STT.
* **It answers only when addressed.** Both avatars hear the person; a :class:`Floor` shared by the two
  decides whose turn each utterance is: the avatar whose name it says, else the one the person last
  addressed, at first the first persona. The other transcribes the same words and lets them go (its
  Session's ``answers_to``, asked on the whole turn's words, says no; words that cannot be made out are the
  addressed avatar's to ask about), so each user turn is answered, and transcribed into the room, once.
  Typed ``lk.chat`` messages are routed the same way.

Only the first persona greets when a person arrives; the second waits to be addressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from livekit import rtc

from agent.persona import Persona
from avatar_core.config import AppSettings
from avatar_core.frames import AUDIO_RATE, AudioFrame, OutputFrame, VideoFrame
from avatar_core.listening_features import ListeningFeatures
from avatar_core.partner import PartnerFrame
from integrations.files.dialogue import AvatarPartner
from integrations.lifecycle import on_stop_signals
from integrations.livekit.attendee import AttendPolicy
from integrations.livekit.join import connected_room
from integrations.livekit.listen import TrackReader
from integrations.livekit.room import RoomAvatar
from integrations.livekit.tokens import KEY_ENV, SECRET_ENV, Credentials, TokenError, resolve_credentials
from integrations.stack import AvatarStack, SharedModels, open_stack

log = logging.getLogger(__name__)

PEER_QUEUE = 100  # output frames of the other avatar waiting to be perceived (2 s of audio); more are dropped


class DialogueError(ValueError):
    """The two avatars cannot be put in the room as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------------
# Identities and tokens
# ---------------------------------------------------------------------------------------------------


def dialogue_identities(personas: Sequence[Persona]) -> list[str]:
    """Each avatar's participant identity: its persona's ``livekit_identity`` (the second gets ``-2``
    appended when both are the same persona: a room holds one participant per identity)."""
    if len(personas) != 2:
        raise DialogueError(f"a dialogue has two personas, got {len(personas)}")
    first, second = (p.identity.livekit_identity for p in personas)
    return [first, second if second != first else f"{second}-2"]


def dialogue_credentials(
    room: str, personas: Sequence[Persona], *, url: str | None = None, env: Mapping[str, str] | None = None
) -> list[Credentials]:
    """One token per avatar, each minted for its own identity with the grants ``join`` mints (needs
    ``LIVEKIT_API_KEY`` and ``LIVEKIT_API_SECRET``: two participants cannot share one given token)."""
    env = os.environ if env is None else env
    if not env.get(KEY_ENV) or not env.get(SECRET_ENV):
        raise TokenError(
            f"two avatars need a token each: set {KEY_ENV} and {SECRET_ENV} so dyad can mint them "
            "(livekit-server --dev uses devkey / secret)"
        )
    return [
        resolve_credentials(room, persona.identity, url=url, participant_identity=identity, env=env)
        for persona, identity in zip(personas, dialogue_identities(personas), strict=True)
    ]


# ---------------------------------------------------------------------------------------------------
# Who answers the person
# ---------------------------------------------------------------------------------------------------


def _name_pattern(names: Sequence[str]) -> re.Pattern[str]:
    """Any of ``names`` as whole words, ignoring case."""
    words = sorted({n for n in names if n}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in words) + r")\b", re.IGNORECASE)


class Floor:
    """Whose turn the person's words are: the avatar they name, else the one they last named (at first
    avatar 0). Shared by both avatars; pure bookkeeping on the event loop."""

    def __init__(self, names: Sequence[Sequence[str]]) -> None:
        self._patterns = [_name_pattern(ns) for ns in names]
        self.addressee = 0

    def claims(self, index: int, text: str) -> bool:
        """Whether avatar ``index`` answers ``text`` (updating who is addressed when a name is said)."""
        named = [i for i, pattern in enumerate(self._patterns) if pattern.search(text)]
        if len(named) == 1:
            self.addressee = named[0]
        return self.addressee == index


def persona_names(persona: Persona, identity: str) -> list[str]:
    """What a person may call an avatar: its display name and its participant identity."""
    return [persona.identity.display_name, identity]


# ---------------------------------------------------------------------------------------------------
# Perceiving the other avatar
# ---------------------------------------------------------------------------------------------------


class RoomListening(ListeningFeatures):
    """The Session's listening features with the other avatar added: the person's perception while the
    person speaks (or the other avatar is silent), the other avatar's while it speaks and the person does
    not. ``hear``/``see`` take the other avatar's output; ``hear`` blocks (VAD, F0): call it off the loop.
    """

    def __init__(self, peer: AvatarPartner) -> None:
        super().__init__()
        self.peer = peer
        self.peer_t = 0.0  # seconds of the other avatar's audio heard: its clock, as AvatarPartner's
        self.peer_heard_speaking = False  # whether the other avatar's voice has been followed at all
        self._peer_lock = threading.Lock()

    def hear(self, samples: npt.NDArray[np.int16]) -> None:
        """The other avatar's next 24 kHz audio (S,)."""
        with self._peer_lock:
            self.peer.hear(samples)
            self.peer_t += samples.size / AUDIO_RATE

    def see(self, motion: npt.NDArray[np.float32]) -> None:
        """The other avatar's face motion (D,) as just drawn."""
        with self._peer_lock:
            self.peer.see(motion, self.peer_t)

    def frame(self, t: float) -> PartnerFrame:
        person = super().frame(t)
        if person.speaking:
            return person
        with self._peer_lock:
            other = self.peer.frame(self.peer_t)
        if not other.speaking:
            return person
        self.peer_heard_speaking = True
        return dataclasses.replace(other, t=t)


class DialogueAvatar(RoomAvatar):
    """A :class:`RoomAvatar` that perceives the other avatar and answers only the words for it."""

    def __init__(
        self,
        room: rtc.Room,
        stack: AvatarStack,
        index: int,
        floor: Floor,
        *,
        policy: AttendPolicy | None = None,
        reader: TrackReader | None = None,
    ) -> None:
        super().__init__(room, stack, policy=policy, reader=reader)
        self.index = index
        self.floor = floor
        self.stack_name = stack.persona.identity.display_name
        self.listening: RoomListening | None = None  # built off the loop when run starts (VAD, dlib)
        self.peers: list[DialogueAvatar] = []  # who perceives this avatar's output
        self._inbox: asyncio.Queue[OutputFrame] = asyncio.Queue(PEER_QUEUE)
        self._dropped = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dyad-peer")

    async def run(self) -> None:
        stack = self._attached()
        turn_taking = stack.persona.turn_taking
        self.listening = await asyncio.to_thread(lambda: RoomListening(AvatarPartner(turn_taking)))
        stack.session.features = self.listening
        stack.session.answers_to = functools.partial(self.floor.claims, self.index)
        self.tasks.spawn(self._perceive(self.listening), "peer")
        try:
            await super().run()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def send_frame(self, frame: OutputFrame) -> None:
        await super().send_frame(frame)
        for peer in self.peers:
            peer.offer(frame)

    def offer(self, frame: OutputFrame) -> None:
        """One output frame of the other avatar, to perceive (never waits; drops when far behind)."""
        if self.listening is None or self.closed:
            return  # not perceiving yet, or any more
        try:
            self._inbox.put_nowait(frame)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped in (1, 100, 10_000):
                log.warning("%s: perceiving the other avatar falls behind (%d frames dropped)",
                            self.stack_name, self._dropped)  # fmt: skip

    async def _perceive(self, listening: RoomListening) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._inbox.get()
            if isinstance(frame, AudioFrame):
                await loop.run_in_executor(self._pool, listening.hear, frame.samples)
                # The same merged perception the Session gives on each piece of the person's audio, so
                # the face follows the other avatar even when nobody's microphone is in the room.
                self.engine.observe_user(listening.frame(self.engine.clock.now()))
            elif isinstance(frame, VideoFrame):
                listening.see(frame.motion)


# ---------------------------------------------------------------------------------------------------
# The pair
# ---------------------------------------------------------------------------------------------------


class DuoRoom:
    """Two :class:`DialogueAvatar` in one room, each on its own connection (``rooms[i]`` is avatar ``i``'s
    view of the room). ``await DuoRoom(rooms, stacks).run()`` serves until the room ends for either or
    :meth:`stop`; then both leave."""

    def __init__(
        self,
        rooms: Sequence[rtc.Room],
        stacks: Sequence[AvatarStack],
        *,
        identities: Sequence[str] | None = None,
        policy: AttendPolicy | None = None,
        reader: TrackReader | None = None,
    ) -> None:
        if len(rooms) != 2 or len(stacks) != 2:
            raise DialogueError(
                f"a dialogue has two avatars, got {len(rooms)} rooms and {len(stacks)} stacks"
            )
        ids = list(identities) if identities is not None else [r.local_participant.identity for r in rooms]
        self.floor = Floor([persona_names(s.persona, i) for s, i in zip(stacks, ids, strict=True)])
        self.avatars = [
            DialogueAvatar(room, stack, k, self.floor, policy=policy, reader=reader)
            for k, (room, stack) in enumerate(zip(rooms, stacks, strict=True))
        ]
        first, second = self.avatars
        first.peers.append(second)
        second.peers.append(first)

    async def run(self) -> None:
        """Serve the room with both avatars; when one stops (its room ended), the other leaves too."""
        runs = [asyncio.create_task(a.run(), name=f"dyad-dialogue-{a.stack_name}") for a in self.avatars]
        try:
            await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.stop()
            results = await asyncio.gather(*runs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    def stop(self) -> None:
        """Both avatars leave (from any callback)."""
        for avatar in self.avatars:
            avatar.stop()


def second_persona(persona: Persona) -> Persona:
    """The second avatar's persona: the same, without a greeting (the first greets a newcomer)."""
    data = persona.model_dump()
    data["llm"]["greeting"] = ""
    return Persona.model_validate(data)


async def live_dialogue(
    room_name: str,
    personas: Sequence[Persona],
    *,
    url: str | None = None,
    policy: AttendPolicy | None = None,
    settings: AppSettings | None = None,
) -> None:
    """Join ``room_name`` with both personas, each as its own participant, until stopped or the room ends."""
    credentials = dialogue_credentials(room_name, personas, url=url)
    settings = settings or AppSettings()
    names = [p.identity.display_name for p in personas]
    models = SharedModels(settings)
    try:
        async with contextlib.AsyncExitStack() as scope:
            stacks = [
                await scope.enter_async_context(open_stack(persona, settings, models=models, seed=k))
                for k, persona in enumerate([personas[0], second_persona(personas[1])])
            ]
            rooms = [await scope.enter_async_context(connected_room(room_name, c)) for c in credentials]
            duo = DuoRoom(rooms, stacks, identities=[c.identity for c in credentials], policy=policy)
            who = " and ".join(f"{n} as {c.identity!r}" for n, c in zip(names, credentials, strict=True))
            print(f"dyad: {who} joined room {room_name!r} at {credentials[0].url}  (Ctrl+C to leave)",
                  flush=True)  # fmt: skip
            with on_stop_signals(duo.stop):
                await duo.run()
    finally:
        await models.aclose()
    print(f"dyad: {' and '.join(names)} left room {room_name!r}", flush=True)
