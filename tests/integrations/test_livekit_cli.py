"""`dyad livekit worker` / `join`: what they refuse before touching the network, with the reason."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.persona import load_persona
from integrations.cli.main import app
from integrations.livekit.tokens import mint_token

runner = CliRunner()
SECRET = "secret-that-is-long-enough-for-hs256"


@pytest.fixture
def no_livekit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)


def test_worker_needs_the_server_and_its_keys(no_livekit_env: None) -> None:
    result = runner.invoke(app, ["livekit", "worker"])
    assert result.exit_code == 2
    assert "LIVEKIT_URL (or --url), LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in result.output
    result = runner.invoke(app, ["livekit", "worker", "--url", "ws://127.0.0.1:7880", "--attend", "loudest"])
    assert result.exit_code == 2 and "LIVEKIT_API_KEY" in result.output


def test_join_refuses_a_token_for_another_room(no_livekit_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    token = mint_token(load_persona("default").identity, "room-a", api_key="devkey", api_secret=SECRET)
    args = ["livekit", "join", "--url", "ws://127.0.0.1:7880", "--room", "room-b", "--token", token]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "cannot join" in result.output and "for room 'room-a', not 'room-b'" in result.output
    result = runner.invoke(app, [*args[:5], "room-a", "--token", token, "--identity", "someone-else"])
    assert result.exit_code == 2 and "identity 'dyad-ada', not 'someone-else'" in result.output


def test_join_names_what_is_missing(no_livekit_env: None) -> None:
    result = runner.invoke(app, ["livekit", "join", "--room", "demo"])
    assert result.exit_code == 2 and "no LiveKit URL" in result.output
    result = runner.invoke(app, ["livekit", "join", "--room", "demo", "--url", "ws://127.0.0.1:7880"])
    assert result.exit_code == 2 and "LIVEKIT_API_KEY and LIVEKIT_API_SECRET" in result.output
    result = runner.invoke(app, ["livekit", "join", "--room", "demo", "--attend", "loudest"])
    assert result.exit_code == 2 and "identity:NAME" in result.output
