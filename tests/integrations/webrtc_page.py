"""A browser tab of ``dyad serve``, played by aiortc: what the page does, without a browser."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole

from integrations.webrtc.ice import rtc_configuration


@dataclass
class Page:
    """One connected tab: its peer connection, the avatar's media sink and what the page received."""

    pc: RTCPeerConnection
    sink: MediaBlackhole
    session_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)  # set with every message

    async def close(self) -> None:
        await self.sink.stop()
        await self.pc.close()


async def connect_page(url: str) -> Page:
    """Receive the avatar, open the ``events`` channel and send the offer, as the page does (with the
    ICE servers of ``GET /config``)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "config") as response:
            config = await response.json()
        assert config == {"iceServers": []}, config  # nothing configured: host candidates only
        page = Page(RTCPeerConnection(rtc_configuration()), MediaBlackhole())
        page.pc.addTransceiver("audio", direction="recvonly")
        page.pc.addTransceiver("video", direction="recvonly")
        channel = page.pc.createDataChannel("events")

        @channel.on("message")
        def on_message(message: str) -> None:
            page.events.append(json.loads(message))
            page.received.set()

        @page.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            page.sink.addTrack(track)

        await page.pc.setLocalDescription(await page.pc.createOffer())
        offer = {"sdp": page.pc.localDescription.sdp, "type": page.pc.localDescription.type}
        async with http.post(url + "offer", json=offer) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
    await page.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    await page.sink.start()
    page.session_id = answer["session_id"]
    return page
