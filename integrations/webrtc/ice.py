"""ICE servers for the local browser page: none by default, so nothing leaves the machine.

A WebRTC peer with no ICE server offers only its host candidates, and the page and ``dyad serve`` on
the same machine (or the same network) connect directly. aiortc's ``RTCPeerConnection()`` without a
configuration asks Google's public STUN server for a reflexive address; dyad never relies on that
default: every peer connection it makes is built from :func:`rtc_configuration`, and the page gets the
same list from ``GET /config``. Configure servers (``dyad serve --ice-server``) only when the page is
opened from another network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

TURN_USERNAME_ENV = "DYAD_TURN_USERNAME"
TURN_PASSWORD_ENV = "DYAD_TURN_PASSWORD"
_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


class IceConfigError(ValueError):
    """An ICE server URL that cannot be used."""


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server (TURN needs a username and credential)."""

    url: str
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(_SCHEMES):
            raise IceConfigError(
                f"ICE server {self.url!r}: use stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp|tcp]"
            )
        if self.url.startswith("turn") and not (self.username and self.credential):
            raise IceConfigError(
                f"TURN server {self.url!r} needs credentials: set {TURN_USERNAME_ENV} and {TURN_PASSWORD_ENV}"
            )

    def for_page(self) -> dict[str, Any]:
        """The browser's ``RTCIceServer`` dictionary."""
        entry: dict[str, Any] = {"urls": [self.url]}
        if self.username is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


def ice_servers(urls: Sequence[str]) -> tuple[IceServer, ...]:
    """Servers from URLs; TURN credentials come from the environment, never the command line."""
    username = os.environ.get(TURN_USERNAME_ENV) or None
    credential = os.environ.get(TURN_PASSWORD_ENV) or None
    servers = []
    for url in urls:
        turn = url.startswith("turn")
        servers.append(IceServer(url, username if turn else None, credential if turn else None))
    return tuple(servers)


def rtc_configuration(servers: Sequence[IceServer] = ()) -> RTCConfiguration:
    """An aiortc configuration with exactly ``servers`` (an empty list, not aiortc's public default)."""
    return RTCConfiguration(
        iceServers=[RTCIceServer(s.url, username=s.username, credential=s.credential) for s in servers]
    )
