"""Nothing leaves the machine from the local browser page: a real session (the real avatar stack behind
``DyadServer``, a page played by aiortc, real ICE and DTLS between them) under a guard that records the
destination of every socket send, connect and name lookup in the process and refuses any that is not
this machine's own address."""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aioice.ice import get_host_addresses
from aiortc import RTCPeerConnection
from webrtc_page import connect_page

from agent.persona import load_persona
from integrations.llm.local_server import free_port
from integrations.webrtc.ice import IceServer, ice_servers, rtc_configuration
from integrations.webrtc.server import DyadServer, is_loopback

SLOW_S = 300.0  # models load on a shared 2-core machine: generous, never asserted


class NetworkGuard:
    """Records ``(call, address)`` for every send, connect and lookup; raises for non-local ones."""

    def __init__(self) -> None:
        self.local = {"127.0.0.1", "::1", "localhost", *get_host_addresses(True, True)}
        self.contacted: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []

    def is_local(self, address: object) -> bool:
        if isinstance(address, str | bytes):
            return True  # an AF_UNIX path
        host = str(address[0]).split("%")[0] if isinstance(address, tuple) else str(address)
        if host in self.local:
            return True
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(host).is_loopback
        return False

    def check(self, call: str, address: Any) -> None:
        shown = str(address[0]) if isinstance(address, tuple) else str(address)
        self.contacted.append((call, shown))
        if not self.is_local(address if call != "lookup" else (address,)):
            self.refused.append((call, shown))
            raise OSError(f"test guard: {call} to {shown} would leave the machine")

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
        guard = self

        def sendto(sock: socket.socket, data: Any, *args: Any) -> int:
            guard.check("sendto", args[-1])
            return int(_socket.socket.sendto(sock, data, *args))

        def connect(sock: socket.socket, address: Any) -> None:
            guard.check("connect", address)
            _socket.socket.connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check("connect", address)
            return int(_socket.socket.connect_ex(sock, address))

        real_getaddrinfo, real_gethostbyname = socket.getaddrinfo, socket.gethostbyname

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host is not None:
                guard.check("lookup", host.decode() if isinstance(host, bytes) else host)
            return real_getaddrinfo(host, *args, **kwargs)

        def gethostbyname(host: str) -> str:
            guard.check("lookup", host)
            return real_gethostbyname(host)

        with monkeypatch.context() as patch:
            patch.setattr(socket.socket, "sendto", sendto)
            patch.setattr(socket.socket, "connect", connect)
            patch.setattr(socket.socket, "connect_ex", connect_ex)
            patch.setattr(socket, "getaddrinfo", getaddrinfo)
            patch.setattr(socket, "gethostbyname", gethostbyname)
            yield self


async def _gather(pc: RTCPeerConnection) -> None:
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())


async def test_the_guard_catches_aiortcs_public_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: aiortc's own default configuration asks a public STUN server (refused here); dyad's
    configuration asks nobody."""
    with NetworkGuard().installed(monkeypatch) as guard:
        default = RTCPeerConnection()
        try:
            await _gather(default)
        finally:
            await default.close()
    assert ("lookup", "stun.l.google.com") in guard.refused

    with NetworkGuard().installed(monkeypatch) as guard:
        ours = RTCPeerConnection(rtc_configuration())
        try:
            await _gather(ours)
        finally:
            await ours.close()
    assert guard.refused == [] and guard.contacted == []


async def test_a_page_session_contacts_only_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYAD_LLM__BASE_URL", "http://127.0.0.1:9/v1")  # the greeting needs no LLM
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__WIDTH", "128")
    monkeypatch.setenv("DYAD_APPEARANCE__VIDEO__HEIGHT", "128")
    dyad = DyadServer(load_persona("default"), max_sessions=1)
    with NetworkGuard().installed(monkeypatch) as guard:
        try:
            url = await dyad.start("127.0.0.1", free_port())
            page = await connect_page(url)  # GET /config, then the offer, as the page does
            try:
                while not any(e["type"] == "agent_transcript" and e["final"] for e in page.events):
                    page.received.clear()
                    await asyncio.wait_for(page.received.wait(), SLOW_S)  # the greeting, played
            finally:
                await page.close()
        finally:
            await dyad.stop()
            await dyad.models.aclose()
    assert guard.refused == [], f"contacted outside this machine: {guard.refused}"
    assert any(call == "sendto" for call, _ in guard.contacted), "the guard saw no ICE traffic"


def test_ice_servers_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ice_servers([]) == ()
    assert rtc_configuration().iceServers == []
    stun = ice_servers(["stun:stun.example.org:3478"])
    assert stun[0].for_page() == {"urls": ["stun:stun.example.org:3478"]}
    with pytest.raises(ValueError, match="DYAD_TURN_USERNAME"):
        ice_servers(["turn:turn.example.org"])
    monkeypatch.setenv("DYAD_TURN_USERNAME", "kiosk")
    monkeypatch.setenv("DYAD_TURN_PASSWORD", "secret")
    (turn,) = ice_servers(["turn:turn.example.org?transport=tcp"])
    assert turn == IceServer("turn:turn.example.org?transport=tcp", "kiosk", "secret")
    with pytest.raises(ValueError, match="stun:HOST"):
        ice_servers(["http://example.org"])
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
