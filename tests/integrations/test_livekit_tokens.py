"""Join tokens: minted with least privilege from the persona, decoded and checked; wrong ones refused."""

from __future__ import annotations

import datetime

import pytest
from livekit import api

from agent.persona import load_persona
from integrations.livekit.tokens import TokenError, check_token, mint_token, resolve_credentials

KEY, SECRET = "devkey", "secret-that-is-long-enough-for-hs256"
ENV = {"LIVEKIT_URL": "ws://127.0.0.1:7880", "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET}


def test_minted_token_has_only_what_the_avatar_needs() -> None:
    identity = load_persona("default").identity
    token = mint_token(identity, "room-a", api_key=KEY, api_secret=SECRET)
    claims = api.TokenVerifier(KEY, SECRET).verify(token)  # signature, issuer and expiry checked
    assert claims.identity == identity.livekit_identity == "dyad-ada"
    assert claims.name == "Ada" and claims.kind == "agent"
    assert claims.attributes == {"role": "assistant"}
    grants = claims.video
    assert grants is not None
    assert grants.room_join and grants.room == "room-a"
    assert grants.can_publish and grants.can_subscribe and grants.can_publish_data
    assert sorted(grants.can_publish_sources or []) == ["camera", "microphone"]
    assert grants.can_update_own_metadata  # lk.agent.state needs it
    for power in ("room_create", "room_list", "room_record", "room_admin", "agent", "hidden", "recorder"):
        assert not getattr(grants, power), power


def test_a_token_for_room_a_is_refused_for_room_b() -> None:
    identity = load_persona("default").identity
    token = mint_token(identity, "room-a", api_key=KEY, api_secret=SECRET)
    assert check_token(token, "room-a", api_key=KEY, api_secret=SECRET).identity == "dyad-ada"
    with pytest.raises(TokenError, match="for room 'room-a', not 'room-b'"):
        check_token(token, "room-b", api_key=KEY, api_secret=SECRET)
    with pytest.raises(TokenError, match="for room 'room-a', not 'room-b'"):
        check_token(token, "room-b")  # without the secret the claims are still checked
    with pytest.raises(TokenError, match="for room 'room-a', not 'room-b'"):
        resolve_credentials("room-b", identity, token=token, env=ENV)


def test_forged_expired_and_powerless_tokens_are_refused() -> None:
    identity = load_persona("default").identity
    forged = mint_token(identity, "r", api_key=KEY, api_secret="another-secret-another-secret-1234")
    with pytest.raises(TokenError, match="signature"):
        check_token(forged, "r", api_key=KEY, api_secret=SECRET)
    expired = (
        api.AccessToken(KEY, SECRET)
        .with_identity("x")
        .with_grants(api.VideoGrants(room_join=True, room="r"))
        .with_ttl(datetime.timedelta(minutes=-5))
        .to_jwt()
    )
    with pytest.raises(TokenError, match="expired"):
        check_token(expired, "r", api_key=KEY, api_secret=SECRET)
    listen_only = (
        api.AccessToken(KEY, SECRET)
        .with_identity("x")
        .with_grants(api.VideoGrants(room_join=True, room="r", can_publish=False))
        .to_jwt()
    )
    with pytest.raises(TokenError, match="publishing"):
        check_token(listen_only, "r")
    screen_only = (
        api.AccessToken(KEY, SECRET)
        .with_identity("x")
        .with_grants(api.VideoGrants(room_join=True, room="r", can_publish_sources=["screen_share"]))
        .to_jwt()
    )
    with pytest.raises(TokenError, match="microphone and camera"):
        check_token(screen_only, "r")
    with pytest.raises(TokenError, match="not a LiveKit token"):
        check_token("not-a-jwt", "r")


def test_credentials_from_the_environment() -> None:
    identity = load_persona("default").identity
    creds = resolve_credentials("lobby", identity, env=ENV, participant_identity="dyad-ada-2")
    assert creds.url == "ws://127.0.0.1:7880" and creds.room == "lobby" and creds.identity == "dyad-ada-2"
    assert check_token(creds.token, "lobby", api_key=KEY, api_secret=SECRET).identity == "dyad-ada-2"
    with pytest.raises(TokenError, match="LIVEKIT_API_KEY and LIVEKIT_API_SECRET"):
        resolve_credentials("lobby", identity, env={"LIVEKIT_URL": "ws://x"})
    with pytest.raises(TokenError, match="no LiveKit URL"):
        resolve_credentials("lobby", identity, env={})
    with pytest.raises(TokenError, match="not a LiveKit URL"):
        resolve_credentials("lobby", identity, url="127.0.0.1:7880", env=ENV)
