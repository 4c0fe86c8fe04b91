"""``dyad livekit join``: the avatar joins one LiveKit room directly, without a worker or dispatch.

The avatar is built first (models loaded, the embedded LLM started), then it connects with the given
token or one minted from ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``, serves the room until Ctrl+C,
SIGTERM or the room closing, and leaves cleanly. The LiveKit SDK reconnects by itself after network
trouble; if it gives up, ``join`` returns.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from livekit import rtc
from livekit.rtc.participant import PublishTrackError

from agent.persona import Persona
from avatar_core.config import AppSettings
from integrations.lifecycle import on_stop_signals
from integrations.livekit.attendee import AttendPolicy
from integrations.livekit.room import RoomAvatar
from integrations.livekit.tokens import Credentials, TokenError, resolve_credentials
from integrations.stack import open_stack

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0


class JoinError(RuntimeError):
    """The avatar could not join the room."""


@contextlib.asynccontextmanager
async def connected_room(room_name: str, credentials: Credentials) -> AsyncIterator[rtc.Room]:
    """A room connected with ``credentials`` (:class:`JoinError` if it cannot be), left on exit."""
    room = rtc.Room()
    options = rtc.RoomOptions(auto_subscribe=True, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        await room.connect(credentials.url, credentials.token, options)
    except rtc.ConnectError as exc:
        raise JoinError(f"cannot join room {room_name!r} at {credentials.url}: {exc}") from None
    try:
        yield room
    finally:
        await room.disconnect()


async def join(
    room_name: str,
    persona: Persona,
    *,
    url: str | None = None,
    token: str | None = None,
    identity: str | None = None,
    policy: AttendPolicy | None = None,
    settings: AppSettings | None = None,
) -> None:
    """Join ``room_name`` as ``persona`` and stay until stopped or the room ends."""
    credentials = resolve_credentials(
        room_name, persona.identity, url=url, token=token, participant_identity=identity
    )
    if token and identity and credentials.identity != identity:
        raise TokenError(f"the token is for identity {credentials.identity!r}, not {identity!r}")
    name = persona.identity.display_name
    async with (
        open_stack(persona, settings or AppSettings()) as stack,
        connected_room(room_name, credentials) as room,
    ):
        avatar = RoomAvatar(room, stack, policy=policy)
        print(
            f"dyad: {name} joined room {room_name!r} at {credentials.url} as {credentials.identity!r}"
            "  (Ctrl+C to leave)",
            flush=True,
        )
        try:
            with on_stop_signals(avatar.stop):
                await avatar.run()
        except PublishTrackError as exc:
            raise JoinError(f"cannot publish the avatar's tracks in {room_name!r}: {exc}") from None
    print(f"dyad: {name} left room {room_name!r}", flush=True)
