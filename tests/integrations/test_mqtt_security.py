"""Kiosk credentials and TLS against a real Mosquitto: username/password from the environment or a file,
never in a log line (even at DEBUG, even when the broker refuses them); TLS with a private CA; and the
``dyad kiosk`` command's checks of its options."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from mosquitto import WAIT_S, Broker, FakeHost, TlsFiles, Watcher
from pydantic import SecretStr
from typer.testing import CliRunner

from agent.persona import load_persona
from integrations.cli.main import app
from integrations.mqtt.bridge import MqttBridge, MqttSettings
from integrations.mqtt.kiosk import Kiosk

PASSWORD = "s3cret-Pa55word-do-not-log"
DYAD = Path(sys.executable).with_name("dyad")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged, as it would be written, tracebacks included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


async def run_until(bridge: MqttBridge, condition: asyncio.Event | None = None) -> asyncio.Task[None]:
    runner = asyncio.create_task(bridge.run())
    if condition is not None:
        await asyncio.wait_for(condition.wait(), WAIT_S)
    return runner


async def stop(bridge: MqttBridge, runner: asyncio.Task[None]) -> None:
    bridge.stop(drain_s=1.0)
    await asyncio.wait_for(runner, WAIT_S)


async def test_password_login_and_nothing_secret_in_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("mqtt").setLevel(logging.DEBUG)  # paho's own lines too
    broker = Broker(tmp_path, users={"kiosk": PASSWORD, "ops": "ops-pass"})
    broker.start()
    try:
        good = MqttSettings(
            broker=broker.url, kiosk_id="secure-1", username="kiosk", password=SecretStr(PASSWORD)
        )
        assert PASSWORD not in repr(good) and PASSWORD not in str(good.model_dump())
        async with Watcher(broker.port, "dyad/#", username="ops", password="ops-pass") as watcher:
            bridge = MqttBridge(good)
            Kiosk(bridge, FakeHost(), load_persona("default"), "default")
            runner = await run_until(bridge, bridge.connected)
            await watcher.wait_for(lambda m: m.topic == "dyad/secure-1/status" and m.text == "online")
            await stop(bridge, runner)

        wrong = good.model_copy(update={"password": SecretStr(PASSWORD + "-wrong"), "min_backoff_s": 0.05})
        bridge = MqttBridge(wrong)
        runner = await run_until(bridge)
        try:
            for _ in range(int(WAIT_S / 0.05)):
                if logged(caplog).count("retrying in") >= 2:
                    break
                await asyncio.sleep(0.05)
            assert not bridge.connected.is_set()
        finally:
            await stop(bridge, runner)
        text = logged(caplog)
        assert "Not authorized" in text and "check DYAD_MQTT_USERNAME" in text
        assert "dyad-kiosk-secure-1" in text  # paho's DEBUG lines were captured
    finally:
        logging.getLogger("mqtt").setLevel(logging.WARNING)
        broker.stop()
    assert PASSWORD not in text


def wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes(b"\0\0" * 1600)
    return path


@pytest.mark.parametrize("source", ["file", "env"])
async def test_dyad_kiosk_command_logs_in_without_logging_the_password(tmp_path: Path, source: str) -> None:
    broker = Broker(tmp_path, users={"kiosk": PASSWORD, "ops": "ops-pass"})
    broker.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DYAD_")}
    env.update({"DYAD_MQTT_USERNAME": "kiosk", "DYAD_CACHE_DIR": os.environ.get("DYAD_CACHE_DIR", "")})
    env = {k: v for k, v in env.items() if v}
    args = [str(DYAD), "--log-level", "DEBUG", "kiosk", "--broker", broker.url, "--kiosk-id", "cli-1",
            "--transport", "files", "--user-audio", str(wav(tmp_path / "visitor.wav")),
            "--out-dir", str(tmp_path / "sessions")]  # fmt: skip
    if source == "file":
        secret = tmp_path / "mqtt-password"
        secret.write_text(PASSWORD + "\n")
        args += ["--password-file", str(secret)]
    else:
        env["DYAD_MQTT_PASSWORD"] = PASSWORD
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        async with Watcher(broker.port, "dyad/cli-1/#", username="ops", password="ops-pass") as watcher:
            await watcher.wait_for(
                lambda m: m.topic == "dyad/cli-1/status" and m.text == "online", timeout=90
            )
            await watcher.json_on("dyad/cli-1/state", lambda d: d["state"] == "idle")
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.to_thread(process.communicate, timeout=WAIT_S)
            await watcher.wait_for(lambda m: m.topic == "dyad/cli-1/status" and m.text == "offline")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        broker.stop()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "connected to MQTT broker" in text and broker.url in text
    assert PASSWORD not in text


async def test_tls_with_a_private_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tls = TlsFiles.make(tmp_path)
    broker = Broker(tmp_path, tls=tls)
    broker.start()
    try:
        assert broker.url.startswith("mqtts://")
        untrusted = MqttSettings(broker=broker.url, kiosk_id="tls-1", min_backoff_s=0.05)
        bridge = MqttBridge(untrusted)
        runner = await run_until(bridge)
        for _ in range(int(WAIT_S / 0.05)):
            if "retrying in" in logged(caplog):
                break
            await asyncio.sleep(0.05)
        await stop(bridge, runner)
        assert "CERTIFICATE_VERIFY_FAILED" in logged(caplog) and bridge.connections == 0

        trusted = MqttSettings(broker=broker.url, kiosk_id="tls-1", ca_file=tls.ca)
        async with Watcher(broker.port, "dyad/#", tls=tls) as watcher:
            bridge = MqttBridge(trusted)
            Kiosk(bridge, FakeHost(), load_persona("default"), "default")
            runner = await run_until(bridge, bridge.connected)
            await watcher.publish("dyad/tls-1/cmd/session/start", b'{"id": "t"}')
            await watcher.json_on("dyad/tls-1/events", lambda d: d.get("id") == "t")
            transcript = await watcher.json_on("dyad/tls-1/transcript")
            assert transcript["text"].startswith("Hi, I'm Ada")
            await stop(bridge, runner)
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------------------------
# The command's checks
# ---------------------------------------------------------------------------------------------------


def kiosk(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["kiosk", *args])
    return result.exit_code, result.output


BASE = ("--broker", "mqtt://127.0.0.1:1883", "--kiosk-id", "k1")


def test_livekit_transport_checks_its_room_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    code, output = kiosk(*BASE, "--transport", "livekit")
    assert code == 2 and "needs --room" in output
    code, output = kiosk(*BASE, "--transport", "livekit", "--room", "lobby")
    assert code == 2 and "needs LIVEKIT_URL (or --livekit-url), LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in output
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "secret")
    code, output = kiosk(
        *BASE, "--transport", "livekit", "--room", "r", "--livekit-url", "ws://h", "--attend", "x"
    )
    assert code == 2 and "--attend" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--broker", "http://host:1883", "--kiosk-id", "k1"), "use mqtt://HOST:PORT"),
        (("--broker", "mqtt://user:pw@host:1883", "--kiosk-id", "k1"), "must not carry credentials"),
        (("--broker", "mqtt://host:port", "--kiosk-id", "k1"), "the port must be a number"),
        (("--broker", "mqtt://host:1883", "--kiosk-id", "lobby/1"), "kiosk_id"),
        ((*BASE, "--transport", "carrier-pigeon"), "use one of browser, livekit, files"),
        ((*BASE, "--transport", "files"), "needs --user-audio"),
        ((*BASE, "--transport", "files", "--user-audio", "/nonexistent.wav"), "no such file"),
        ((*BASE, "--ca-file", __file__), "need TLS: add --tls or use an mqtts://"),
        ((*BASE, "--topic-prefix", "kiosks/#/"), "no wildcards"),
        ((*BASE, "--persona", "nobody"), "no persona named 'nobody'"),
    ],
)
def test_bad_options_are_clear_errors(args: tuple[str, ...], message: str) -> None:
    code, output = kiosk(*args)
    assert code == 2 and message in output, output


def test_password_needs_a_username_and_a_non_empty_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYAD_MQTT_PASSWORD", PASSWORD)
    code, output = kiosk(*BASE)
    assert code == 2 and "a password needs a username" in output and PASSWORD not in output
    empty = tmp_path / "empty"
    empty.write_text("")
    code, output = kiosk(*BASE, "--username", "u", "--password-file", str(empty))
    assert code == 2 and "is empty" in output
