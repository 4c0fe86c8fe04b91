"""Fine-tuning data for the vocoder: the joint model's own speech features beside the teacher's audio.

A vocoder trained only on features analysed from real speech meets smoother features at run time (the
joint model's predictions), and renders them muffled. As Tacotron 2 and HiFi-GAN do, we let the joint
model predict the features of every speaking sample with the teacher's phoneme durations ("ground-truth
aligned", GTA), so each predicted frame lines up with the teacher's audio, and fine-tune the vocoder on
those pairs (docs/design.md, "The joint model").

The output folder holds ordinary dataset samples (``avatar_core.data.samples``) whose ``speech`` is the
prediction. Writing is resumable (finished samples are skipped) and deterministic (the sampling noise
is keyed by the sample's name), so a lost folder is rebuilt by the same command.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from avatar_core.data.samples import DatasetError, load_sample, sample_paths

log = logging.getLogger(__name__)


def write_gta(
    data_dir: Path,
    out: Path,
    checkpoint: Path | None = None,
    temperature: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    vocoder: Path | None = None,
) -> int:
    """Write one GTA sample into ``out`` for each speaking sample (with audio, in one of the checkpoint's
    voices) of ``data_dir``; returns how many were written now (blocking: torch). ``vocoder``: the
    checkpoint to be fine-tuned on them (default: the bundled one for the model's features); the joint
    model refuses one that reads other features, so the pairs always fit it."""
    from avatar_core.config import AppSettings
    from avatar_core.model.inference import SPEECH_TEMPERATURE, JointModel
    from avatar_core.vocoder.infer import NeuralVocoder

    # by default the temperature the model speaks with at run time (the constructor checks the value), and
    # oneDNN as a live process sets it, so the features are the ones the vocoder will meet
    model = JointModel(
        checkpoint,
        temperature=SPEECH_TEMPERATURE if temperature is None else temperature,
        onednn=AppSettings().torch_onednn,
        vocoder=NeuralVocoder.load(vocoder) if vocoder is not None else None,
    )
    config = model.model.config
    layout = config.name(config.speech)  # what the model predicts
    out.mkdir(parents=True, exist_ok=True)
    paths = sample_paths(data_dir)
    written = 0
    for i, path in enumerate(paths):
        if progress:
            progress(i, len(paths))
        if (out / path.name).exists():
            continue
        try:
            sample = load_sample(path)
        except DatasetError as exc:
            log.warning("skipping %s", exc)
            continue
        if sample.role != "speak" or sample.audio is None or sample.voice not in model.voices:
            continue
        speech = model.speech_for(sample.tokens, sample.durations, sample.voice, key=sample.name)
        gta = dataclasses.replace(sample, speech=speech, source=f"gta:{sample.source}", speech_layout=layout)
        gta.save(out)
        written += 1
    if progress:
        progress(len(paths), len(paths))
    return written
