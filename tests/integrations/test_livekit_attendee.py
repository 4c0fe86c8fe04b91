"""Whom the avatar attends to: first human, active speaker, a named identity; switching on leave/speech."""

from __future__ import annotations

import pytest
from livekit import rtc

from integrations.livekit.attendee import AttendeeSelector, AttendPolicy

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
EGRESS = rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS
SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def test_policies_parse() -> None:
    assert AttendPolicy.parse("first") == AttendPolicy("first")
    assert AttendPolicy.parse(" speaker ") == AttendPolicy("speaker")
    assert AttendPolicy.parse("identity:alice") == AttendPolicy("identity", "alice")
    assert str(AttendPolicy.parse("identity:alice")) == "identity:alice"
    for bad in ("loudest", "identity:", ""):
        with pytest.raises(ValueError, match="'first', 'speaker' or 'identity:NAME'"):
            AttendPolicy.parse(bad)


def test_first_human_then_the_next_when_they_leave() -> None:
    s = AttendeeSelector(AttendPolicy("first"))
    assert not s.joined("other-agent", AGENT) and not s.joined("recorder", EGRESS)
    assert s.current is None
    assert s.joined("alice") and s.current == "alice"
    assert not s.joined("bob", SIP) and s.current == "alice"  # a caller by phone is a human too
    assert not s.speaking(["bob"]) and s.current == "alice"  # speech does not switch this policy
    assert s.left("alice") and s.current == "bob"
    assert not s.joined("alice") and s.current == "bob"  # coming back does not take over
    assert s.left("bob") and s.current == "alice"
    assert s.left("alice") and s.current is None
    assert not s.left("nobody")


def test_active_speaker_switches_when_another_speaks() -> None:
    s = AttendeeSelector(AttendPolicy("speaker"))
    s.joined("alice")
    s.joined("bob")
    s.joined("helper-bot", AGENT)
    assert s.current == "alice"  # before anyone speaks: the first human
    assert s.speaking(["bob"]) and s.current == "bob"
    assert not s.speaking(["alice", "bob"]) and s.current == "bob"  # the current one still talks
    assert not s.speaking(["helper-bot"]) and s.current == "bob"  # agents are never attended
    assert not s.speaking([]) and s.current == "bob"  # silence keeps the attendee
    assert s.speaking(["alice"]) and s.current == "alice"
    assert s.left("alice") and s.current == "bob"


def test_named_identity_only() -> None:
    s = AttendeeSelector(AttendPolicy("identity", "carol"))
    assert not s.joined("alice") and s.current is None
    assert s.joined("carol") and s.current == "carol"
    assert not s.speaking(["alice"]) and s.current == "carol"
    assert s.left("carol") and s.current is None  # nobody while carol is away
    assert s.joined("carol") and s.current == "carol"  # and back when she returns
