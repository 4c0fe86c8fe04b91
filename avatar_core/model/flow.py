"""Conditional flow matching around :class:`~avatar_core.model.avflow.AVFlow`: the loss and the Euler sampler.

Optimal-transport paths (Lipman et al. 2023) as in Matcha-TTS and AV-Flow: x_t = (1 - t) x_0 + t x_1,
target velocity u = x_1 - x_0, L1 loss per output with the speech output weighted higher (AV-Flow). The
source x_0 is Gaussian noise around the text prior ``mu`` (Grad-TTS), so a few Euler steps suffice.

Letters in shape comments: B batch, N tokens, T frames, F speech features, M motion-tower channels,
P partner features, D motion fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from avatar_core.model.avflow import AVFlow
from avatar_core.model.config import EULER_STEPS


@dataclass
class Batch:
    """Padded training batch; every frame tensor is already cropped to the same window."""

    tokens: Tensor  # (B, N) int64
    token_valid: Tensor  # (B, N) bool
    durations: Tensor  # (B, N) int64, frames per token over the whole utterance
    offset: Tensor  # (B,) int64, first frame of the crop within the utterance
    speech: Tensor  # (B, T, F) raw features
    motion: Tensor  # (B, T, D) raw motion frames
    partner: Tensor  # (B, T, P)
    valid: Tensor  # (B, T) bool
    speaker: Tensor  # (B,) int64

    def to(self, device: torch.device) -> Batch:
        """The same batch on ``device``."""
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


def crop_condition(model: AVFlow, batch: Batch, text: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Token states -> per-frame condition and priors for the batch's crop windows; and log-durations."""
    h, log_dur = model.encode_text(batch.tokens, batch.token_valid, batch.speaker)
    total = int((batch.offset + batch.valid.shape[1]).max())
    cond, mu_s, mu_m = model.condition(h, batch.durations, total, batch.speaker, text)
    t = batch.valid.shape[1]
    idx = (batch.offset[:, None] + torch.arange(t, device=cond.device)[None])[..., None]  # (B, T, 1)
    pick = lambda x: x.gather(1, idx.expand(-1, -1, x.shape[2]))  # noqa: E731
    return pick(cond), pick(mu_s), pick(mu_m), log_dur


def losses(model: AVFlow, batch: Batch) -> dict[str, Tensor]:
    """Flow-matching, prior and duration losses of one batch (``total`` is what to minimise)."""
    cfg = model.config
    b = batch.tokens.shape[0]
    device = batch.tokens.device
    audio_driven = torch.rand(b, device=device) < cfg.audio_driven_p  # (B,)
    cond, mu_s, mu_m, log_dur = crop_condition(model, batch, ~audio_driven)
    x1s, x1m = model.normalize(batch.speech, model.motion_targets(batch.motion))  # (B,T,F), (B,T,M)
    mask = batch.valid[..., None].float()  # (B, T, 1)

    t = torch.rand(b, device=device)  # (B,)
    x0s = mu_s.detach() + cfg.noise_scale * torch.randn_like(x1s)
    x0m = mu_m.detach() + cfg.noise_scale * torch.randn_like(x1m)
    # Audio-driven rows see clean speech at time 1 and learn only the motion.
    ts = torch.where(audio_driven, torch.ones_like(t), t)
    xts, us = ot_path(x0s, x1s, ts)
    xtm, um = ot_path(x0m, x1m, t)
    vs, vm = model.velocity(xts, xtm, ts, t, cond, mu_s, mu_m, batch.partner, batch.valid)

    speech_rows = (~audio_driven).float()[:, None, None] * mask
    frames_s = speech_rows.sum().clamp(min=1.0) * x1s.shape[2]
    frames_m = mask.sum().clamp(min=1.0) * x1m.shape[2]
    flow_s = ((vs - us).abs() * speech_rows).sum() / frames_s
    flow_m = ((vm - um).abs() * mask).sum() / frames_m
    prior = ((mu_s - x1s).abs() * speech_rows).sum() / frames_s + ((mu_m - x1m).abs() * speech_rows).sum() / (
        speech_rows.sum().clamp(min=1.0) * x1m.shape[2]
    )
    valid_tokens = batch.token_valid.float()
    target_dur = torch.log1p(batch.durations.float())
    duration = ((log_dur - target_dur) ** 2 * valid_tokens).sum() / valid_tokens.sum().clamp(min=1.0)
    total = cfg.speech_weight * flow_s + cfg.motion_weight * flow_m + prior + duration
    return {
        "total": total,
        "flow_speech": flow_s,
        "flow_motion": flow_m,
        "prior": prior,
        "duration": duration,
    }


def ot_path(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """The optimal-transport path at times t (B,): x_t and its velocity u = x_1 - x_0."""
    tt = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - tt) * x0 + tt * x1, x1 - x0


def integrate(
    velocity: Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, ...]], x0: tuple[Tensor, ...], steps: int
) -> tuple[Tensor, ...]:
    """Euler solver of dx/dt = velocity(t, x) from t = 0 to 1 in ``steps`` equal steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = x0
    b = x0[0].shape[0]
    for i in range(steps):
        t = torch.full((b,), i / steps, device=x0[0].device)
        v = velocity(t, x)
        x = tuple(xi + vi / steps for xi, vi in zip(x, v, strict=True))
    return x


@torch.inference_mode()
def euler(
    model: AVFlow,
    cond: Tensor,
    mu_s: Tensor,
    mu_m: Tensor,
    partner: Tensor,
    steps: int = EULER_STEPS,
    speech: Tensor | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Integrate both flows from t = 0 to 1 with ``steps`` Euler steps -> normalised (B,T,F), (B,T,M).

    With ``speech`` (normalised, (B, T, F)) the speech tower reads it at t = 1 and only motion is
    generated (audio-driven mode). ``temperature`` scales the speech tower's source noise around its
    prior (Grad-TTS's temperature): below 1 the speech is clearer and its prosody plainer; motion
    always starts from the trained noise.
    """
    b, t = cond.shape[:2]
    valid = torch.ones(b, t, dtype=torch.bool, device=cond.device)
    noise = model.config.noise_scale
    xs0 = speech if speech is not None else mu_s + temperature * noise * _randn(mu_s, generator)
    xm0 = mu_m + noise * _randn(mu_m, generator)

    def velocity(tau: Tensor, x: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        ts = torch.ones_like(tau) if speech is not None else tau
        vs, vm = model.velocity(x[0], x[1], ts, tau, cond, mu_s, mu_m, partner, valid)
        return (torch.zeros_like(vs) if speech is not None else vs), vm

    xs, xm = integrate(velocity, (xs0, xm0), steps)
    return xs, xm


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
