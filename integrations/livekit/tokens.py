"""LiveKit credentials: a URL and a join token, given or minted with least privilege.

Either the caller passes a token (it is checked: a token for another room, or one that cannot publish the
avatar's tracks, is refused before connecting), or dyad mints one from ``LIVEKIT_API_KEY`` and
``LIVEKIT_API_SECRET``: room join for that one room, publish the microphone and camera only, subscribe,
publish data, update its own attributes (needed for ``lk.agent.state``), nothing else. Identity, name,
metadata and attributes come from the persona, and the participant kind is ``agent``, which is how the
stock LiveKit frontends recognise the avatar.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from livekit import api
from livekit.api.access_token import Claims

from agent.persona import IdentityConfig

URL_ENV = "LIVEKIT_URL"
KEY_ENV = "LIVEKIT_API_KEY"
SECRET_ENV = "LIVEKIT_API_SECRET"
TOKEN_TTL = datetime.timedelta(hours=1)  # only the first connection needs it; LiveKit refreshes it after
PUBLISH_SOURCES = ["microphone", "camera"]  # LiveKit's lower-case TrackSource names


class TokenError(ValueError):
    """The credentials cannot be used to join the room as the avatar."""


@dataclass(frozen=True)
class Credentials:
    """Where to connect and the token to present."""

    url: str
    token: str
    room: str
    identity: str


def mint_token(
    identity: IdentityConfig,
    room: str,
    *,
    api_key: str,
    api_secret: str,
    participant_identity: str | None = None,
    ttl: datetime.timedelta = TOKEN_TTL,
) -> str:
    """A join token for ``room`` only, with the least privilege the avatar needs."""
    if not room:
        raise TokenError("no room name: pass --room ROOM")
    grants = api.VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_publish_sources=list(PUBLISH_SOURCES),
        can_subscribe=True,
        can_publish_data=True,
        can_update_own_metadata=True,  # without it set_attributes(lk.agent.state) silently does nothing
    )
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(participant_identity or identity.livekit_identity)
        .with_name(identity.livekit_name or identity.display_name)
        .with_metadata(identity.livekit_metadata)
        .with_kind("agent")
        .with_grants(grants)
        .with_ttl(ttl)
    )
    if identity.livekit_attributes:
        token = token.with_attributes(dict(identity.livekit_attributes))
    return token.to_jwt()


def check_token(
    token: str, room: str, *, api_key: str | None = None, api_secret: str | None = None
) -> Claims:
    """Decode ``token`` and check that it lets the avatar join ``room`` and publish its tracks.

    The signature is verified when the key and secret are known; otherwise only the claims are read (the
    server verifies the signature anyway), so a wrong token fails here with a clear message rather than
    after connecting.
    """
    verify = bool(api_key and api_secret)
    try:
        claims = api.TokenVerifier(api_key, api_secret).verify(token, verify_signature=verify)
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired: mint a new one") from None
    except jwt.InvalidIssuerError:
        raise TokenError(f"the token was not issued by API key {api_key!r}") from None
    except jwt.InvalidSignatureError:
        raise TokenError("the token's signature does not match LIVEKIT_API_SECRET") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"not a LiveKit token: {exc}") from None
    grants = claims.video
    if grants is None or not grants.room_join:
        raise TokenError("the token has no room_join grant")
    if grants.room != room:
        raise TokenError(f"the token is for room {grants.room!r}, not {room!r}")
    if not claims.identity:
        raise TokenError("the token has no participant identity (sub)")
    sources = [s.lower() for s in grants.can_publish_sources or []]
    if not grants.can_publish or (sources and not {"microphone", "camera"} <= set(sources)):
        raise TokenError("the token does not allow publishing the microphone and camera")
    if not grants.can_subscribe:
        raise TokenError("the token does not allow subscribing: the avatar could not hear anyone")
    return claims


def resolve_credentials(
    room: str,
    identity: IdentityConfig,
    *,
    url: str | None = None,
    token: str | None = None,
    participant_identity: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """The URL and token to join ``room``: the given token (checked), else one minted from the API key
    and secret in the environment."""
    env = os.environ if env is None else env
    url = url or env.get(URL_ENV) or ""
    if not url:
        raise TokenError(f"no LiveKit URL: pass --url or set {URL_ENV} (e.g. ws://127.0.0.1:7880)")
    if not url.startswith(("ws://", "wss://", "http://", "https://")):
        raise TokenError(f"{url!r} is not a LiveKit URL: use ws://HOST:7880 or wss://PROJECT.livekit.cloud")
    key, secret = env.get(KEY_ENV), env.get(SECRET_ENV)
    if token:
        claims = check_token(token, room, api_key=key, api_secret=secret)
        return Credentials(url, token, room, claims.identity)
    if not key or not secret:
        raise TokenError(
            f"no token: pass --token, or set {KEY_ENV} and {SECRET_ENV} so dyad can mint one "
            "(livekit-server --dev uses devkey / secret)"
        )
    minted = mint_token(
        identity, room, api_key=key, api_secret=secret, participant_identity=participant_identity
    )
    return Credentials(url, minted, room, participant_identity or identity.livekit_identity)
