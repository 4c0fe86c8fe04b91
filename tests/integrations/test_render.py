"""`dyad render`: an MP4 whose audio and video decode with equal durations, and its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avatar_core.config import KOKORO_VOICES
from avatar_core.model.avflow import AVFlow
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.train import save_checkpoint
from avatar_core.text.frontend import VOCAB
from integrations.files.render import video_audio_durations

DYAD = [sys.executable, "-m", "integrations.cli.main"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = AVFlow(ModelConfig.model_validate({**SIZES["tiny"], "voices": KOKORO_VOICES}), len(VOCAB))
    with torch.no_grad():
        net.duration[-1].bias.fill_(1.6)  # about 100 ms per phoneme
    path: Path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, net, {"step": 0})
    return path


def run_render(out: Path, mode: str, checkpoint: Path) -> dict[str, object]:
    env = {**os.environ, "DYAD_MODEL": str(checkpoint)}
    done = subprocess.run(
        [*DYAD, "render", "--text", "Good morning. Your table is ready.", "--mode", mode, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("mode", ["joint", "cascade"])
def test_render_writes_equal_length_audio_and_video(tmp_path: Path, tiny_checkpoint: Path, mode: str) -> None:
    out = tmp_path / f"{mode}.mp4"
    result = run_render(out, mode, tiny_checkpoint)
    assert set(result) == {"duration_s", "synth_s", "rtf", "first_chunk_ms", "mode"}
    assert result["mode"] == mode
    video_s, audio_s = video_audio_durations(out)
    assert abs(video_s - audio_s) <= 0.04
    assert abs(audio_s - float(str(result["duration_s"]))) <= 0.05
    assert float(str(result["synth_s"])) > 0 and float(str(result["first_chunk_ms"])) > 0


def test_render_with_empty_text_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [*DYAD, "render", "--text", "  ", "--out", str(tmp_path / "x.mp4")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--text is empty" in done.stderr
