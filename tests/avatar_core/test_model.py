"""The joint model on a tiny config: shapes, gradients, the Euler sampler, and a loss that falls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from avatar_core.model.avflow import FACE_DIM, AVFlow, upsample
from avatar_core.model.config import SIZES, ModelConfig
from avatar_core.model.flow import Batch, euler, integrate, losses, ot_path
from avatar_core.motion import MOTION_DIM
from avatar_core.partner import PARTNER_DIM
from avatar_core.speech.features import FEATURE_DIM
from avatar_core.training import weight_average

VOCAB = 40


def tiny(**overrides: object) -> AVFlow:
    torch.manual_seed(0)
    return AVFlow(ModelConfig.model_validate({**SIZES["tiny"], **overrides}), VOCAB)


def batch(b: int = 3, n: int = 7, t: int = 24, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    durations = torch.full((b, n), 4)
    return Batch(
        tokens=torch.randint(1, VOCAB, (b, n), generator=g),
        token_valid=torch.ones(b, n, dtype=torch.bool),
        durations=durations,
        offset=torch.zeros(b, dtype=torch.long),
        speech=torch.randn(b, t, FEATURE_DIM, generator=g),
        motion=torch.rand(b, t, MOTION_DIM, generator=g) * 0.2,
        partner=torch.randn(b, t, PARTNER_DIM, generator=g),
        valid=torch.ones(b, t, dtype=torch.bool),
        speaker=torch.zeros(b, dtype=torch.long),
    )


def test_upsample_repeats_tokens_by_duration_with_progress() -> None:
    h = torch.arange(3.0).view(1, 3, 1)  # token i has state i
    frames, progress = upsample(h, torch.tensor([[2, 0, 3]]), 5)
    assert frames.view(-1).tolist() == [0, 0, 2, 2, 2]  # the zero-length token takes no frame
    assert progress.view(-1).tolist() == pytest.approx([0.25, 0.75, 1 / 6, 0.5, 5 / 6])


def test_forward_shapes_and_every_parameter_gets_a_gradient() -> None:
    model = tiny(audio_driven_p=0.5)
    parts = losses(model, batch())
    assert set(parts) == {"total", "flow_speech", "flow_motion", "prior", "duration"}
    assert all(torch.isfinite(v) for v in parts.values())
    parts["total"].backward()
    # adaLN-zero and the zero-initialised heads block gradients to most weights at first (the output
    # layer, then the gates, then the rest open up); after a few updates every tensor must learn.
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for seed in range(1, 4):
        opt.step()
        opt.zero_grad()
        losses(model, batch(seed=seed))["total"].backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if not name.startswith("head_vae.")
        and name != "no_text"
        and (p.grad is None or not p.grad.abs().sum())
    ]
    assert not missing, missing

    model.eval()
    b = batch(b=2, t=24)
    h, log_dur = model.encode_text(b.tokens, b.token_valid, b.speaker)
    assert h.shape == (2, 7, 32) and log_dur.shape == (2, 7)
    cond, mu_s, mu_m = model.condition(h, b.durations, 28, b.speaker, torch.ones(2, dtype=torch.bool))
    assert cond.shape == (2, 28, 32)
    assert mu_s.shape == (2, 28, FEATURE_DIM) and mu_m.shape == (2, 28, FACE_DIM + model.config.head_latent)
    speech, motion = euler(model, cond, mu_s, mu_m, torch.zeros(2, 28, PARTNER_DIM), steps=3)
    assert speech.shape == mu_s.shape and motion.shape == mu_m.shape
    assert model.motion_frames(motion).shape == (2, 28, MOTION_DIM)


def test_audio_driven_sampling_keeps_the_given_speech() -> None:
    model = tiny().eval()
    b = batch(b=1)
    h, _ = model.encode_text(b.tokens, b.token_valid, b.speaker)
    cond, mu_s, mu_m = model.condition(h, b.durations, 24, b.speaker, torch.zeros(1, dtype=torch.bool))
    given = torch.randn(1, 24, FEATURE_DIM)
    speech, motion = euler(model, cond, mu_s, mu_m, torch.zeros(1, 24, PARTNER_DIM), steps=4, speech=given)
    assert torch.equal(speech, given)
    assert torch.isfinite(motion).all()


def test_windowed_attention_ignores_frames_outside_the_window() -> None:
    model = tiny(window=8, blocks=1).eval()
    with torch.no_grad():  # make the block non-trivial (adaLN-zero starts as the identity)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    t = 40
    cond = torch.zeros(1, t, 32)
    mu_s, mu_m = torch.zeros(1, t, FEATURE_DIM), torch.zeros(1, t, model.motion_channels)
    xs, xm = torch.randn(1, t, FEATURE_DIM), torch.randn(1, t, model.motion_channels)
    ones, valid = torch.ones(1), torch.ones(1, t, dtype=torch.bool)
    partner = torch.zeros(1, t, PARTNER_DIM)
    vs, _ = model.velocity(xs, xm, ones * 0.5, ones * 0.5, cond, mu_s, mu_m, partner, valid)
    xs2 = xs.clone()
    xs2[:, 30:] += 5.0  # far from frame 0 (one block sees +-4 frames)
    vs2, _ = model.velocity(xs2, xm, ones * 0.5, ones * 0.5, cond, mu_s, mu_m, partner, valid)
    assert torch.allclose(vs[:, :20], vs2[:, :20], atol=1e-5)
    assert not torch.allclose(vs[:, 26:], vs2[:, 26:], atol=1e-3)


def test_euler_sampler_recovers_a_toy_two_dimensional_distribution() -> None:
    """Flow matching + the Euler solver on a 2-D mixture of two Gaussians at (+-2, 0)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def data(n: int) -> torch.Tensor:
        centre = torch.where(torch.rand(n, 1) < 0.5, -2.0, 2.0)
        return torch.cat([centre, torch.zeros(n, 1)], dim=1) + 0.3 * torch.randn(n, 2)

    for _ in range(1500):
        x1 = data(256)
        x0 = torch.randn_like(x1)
        t = torch.rand(256)
        xt, u = ot_path(x0, x1, t)
        loss = (net(torch.cat([xt, t[:, None]], dim=1)) - u).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.no_grad():
        field = lambda t, x: (net(torch.cat([x[0], t[:, None]], dim=1)),)  # noqa: E731
        (x,) = integrate(field, (torch.randn(4000, 2),), 16)
    left, right = x[x[:, 0] < 0], x[x[:, 0] >= 0]
    assert 0.4 < len(left) / len(x) < 0.6  # both modes, equally weighted
    assert left[:, 0].mean() == pytest.approx(-2.0, abs=0.25)
    assert right[:, 0].mean() == pytest.approx(2.0, abs=0.25)
    assert x[:, 1].std() == pytest.approx(0.3, abs=0.15)
    assert (x[:, 0].abs() < 0.7).float().mean() < 0.08  # little mass between the modes


def test_training_loss_falls_on_a_tiny_synthetic_set() -> None:
    """Speech and motion are simple functions of the tokens; a few hundred steps must learn them."""
    torch.manual_seed(0)
    model = tiny(audio_driven_p=0.0, dropout=0.0)
    table_s = torch.randn(VOCAB, FEATURE_DIM)
    table_m = torch.rand(VOCAB, MOTION_DIM) * 0.3

    def make(seed: int) -> Batch:
        b = batch(b=8, n=6, t=24, seed=seed)
        frames = b.tokens.repeat_interleave(4, dim=1)  # (B, 24) token of each frame
        b.speech, b.motion = table_s[frames], table_m[frames]
        b.motion[..., FACE_DIM:] = 0.0
        return b

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(250):
        parts = losses(model, make(step))
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        history.append(parts["total"].item())
    assert np.mean(history[-25:]) < 0.5 * np.mean(history[:25])


def test_a_time_limited_run_decays_its_learning_rate_over_its_time() -> None:
    from avatar_core.training import warmup_cosine_lr
    from avatar_core.training_config import TrainSettings

    train = TrainSettings(steps=1_000_000, lr=1e-3, warmup_steps=10)
    assert warmup_cosine_lr(5, train, time_used=0.9) == pytest.approx(6e-4)  # warm-up first
    assert warmup_cosine_lr(100, train) == pytest.approx(1e-3, rel=1e-3)  # by steps: barely started
    assert warmup_cosine_lr(100, train, time_used=0.5) == pytest.approx(5.5e-4, rel=1e-3)
    assert warmup_cosine_lr(100, train, time_used=1.0) == pytest.approx(1e-4)  # a tenth at the end


def test_the_weight_average_moves_one_minus_decay_of_the_way_each_step() -> None:
    net = torch.nn.Linear(2, 1)
    assert weight_average(net, 0.0) is None
    averaged = weight_average(net, 0.75)
    assert averaged is not None
    with torch.no_grad():
        net.weight.fill_(1.0)
    averaged.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net.weight.fill_(3.0)
    averaged.update_parameters(net)
    assert torch.allclose(averaged.module.weight, torch.full((1, 2), 1.5))  # 0.75 * 1 + 0.25 * 3
