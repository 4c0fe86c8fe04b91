"""AV-Flow on a CPU: text -> speech features + face motion with two DiT towers joined by highways.

After Chatziagapi et al., "AV-Flow: Transforming Text to Audio-Visual Human-like Interactions" (2025):

* a Matcha-TTS-like text-to-tokens module: phoneme encoder + duration predictor, its outputs repeated
  per frame by the durations (``upsample``) and projected to a per-frame prior ``mu`` of each output;
* two parallel diffusion transformers (speech tower, motion tower) with in-context conditioning (the
  noisy sample is concatenated with the frame's condition before the first block), rotary positions,
  windowed self-attention and adaLN-zero time conditioning (DiT);
* after every block a learned linear *highway* fuses the towers: each adds a projection of the other's
  hidden state, so lips follow the sounds and the voice follows the face;
* dyadic conditioning: the partner's speech and face features (``avatar_core.partner``) are added to the
  motion tower's input, so listening motion (backchannels, mirroring) responds to the partner;
* a small temporal VAE encodes head pose (6 channels) into a smooth latent the motion tower predicts.

Audio-driven mode reuses the same network: the speech tower reads clean speech features at flow time
1 and the text condition is a learned "no text" vector, so the motion tower follows external audio.

Letters in shape comments: B batch, N tokens, T frames, C width, F speech features (``config.speech_dim``:
WORLD parameters or log-mel bands), M motion-tower channels (face fields + head latent), P partner
features, H heads, E head-pose channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avatar_core.model.config import ModelConfig
from avatar_core.motion import MOTION_DIM
from avatar_core.partner import PARTNER_DIM

HEAD_DIM = 6  # head rotation (3) + translation (3): the last fields of the motion frame
FACE_DIM = MOTION_DIM - HEAD_DIM  # 16 face fields, predicted directly


# -------------------------------------------------------------------------------------------------
# Building blocks
# -------------------------------------------------------------------------------------------------


def rotary(x: Tensor) -> Tensor:
    """Rotary position embedding (Su et al. 2021) over the sequence axis of (B, H, T, c)."""
    t, c = x.shape[-2], x.shape[-1]
    half = c // 2
    freqs = 1.0 / (10_000 ** (torch.arange(half, device=x.device, dtype=x.dtype) / half))  # (c/2,)
    angles = torch.arange(t, device=x.device, dtype=x.dtype)[:, None] * freqs  # (T, c/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([out, x[..., 2 * half :]], dim=-1) if c % 2 else out


def attention_mask(valid: Tensor, window: int | None) -> Tensor:
    """Boolean (B, 1, T, T) mask: key is valid and, with a window, within +-window/2 of the query."""
    t = valid.shape[1]
    mask = valid[:, None, None, :]  # (B, 1, 1, T)
    if window is not None:
        idx = torch.arange(t, device=valid.device)
        band = (idx[None, :] - idx[:, None]).abs() <= window // 2  # (T, T)
        mask = mask & band[None, None]
    return mask.expand(-1, 1, t, t)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and an optional window."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, c = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (B,H,T,c)
        q, k = rotary(q), rotary(k)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, T, c)
        return self.out(y.transpose(1, 2).reshape(b, t, c))


def mlp(dim: int, mult: int) -> nn.Sequential:
    """The transformer's feed-forward layer."""
    return nn.Sequential(nn.Linear(dim, dim * mult), nn.GELU(approximate="tanh"), nn.Linear(dim * mult, dim))


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer (phoneme encoder)."""

    def __init__(self, dim: int, heads: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ff = mlp(dim, mult)
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)  # local context between neighbouring phonemes
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, valid: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        x = x + self.conv(x.transpose(1, 2)).transpose(1, 2) * valid[..., None]
        return x + self.drop(self.ff(self.norm2(x)))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: (B, T, C) normalised x scaled and shifted by (B, C) vectors."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """DiT block with adaLN-zero conditioning on the flow time (Peebles & Xie 2023)."""

    def __init__(self, dim: int, heads: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(dim, heads, dropout)
        self.ff = mlp(dim, mult)
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)  # adaLN-zero: every block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: Tensor, temb: Tensor, mask: Tensor) -> Tensor:
        s1, c1, g1, s2, c2, g2 = self.ada(F.silu(temb)).chunk(6, dim=-1)  # (B, C) each
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), s1, c1), mask)
        return x + g2[:, None] * self.ff(modulate(self.norm2(x), s2, c2))


class Highway(nn.Module):
    """The learned linear fusion of the two towers after a block (AV-Flow's highway connections)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.to_speech = nn.Linear(dim, dim)
        self.to_motion = nn.Linear(dim, dim)
        for layer in (self.to_speech, self.to_motion):  # start with independent towers
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hs: Tensor, hm: Tensor) -> tuple[Tensor, Tensor]:
        return hs + self.to_speech(hm), hm + self.to_motion(hs)


class FinalLayer(nn.Module):
    """adaLN then a zero-initialised projection to the output channels."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.ada = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, out)
        for layer in (self.ada, self.proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        shift, scale = self.ada(F.silu(temb)).chunk(2, dim=-1)
        return self.proj(modulate(self.norm(x), shift, scale))


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (B, dim) of flow times t in [0, 1] (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    angles = 1000.0 * t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def upsample(h: Tensor, durations: Tensor, frames: int) -> tuple[Tensor, Tensor]:
    """Repeat token states by their durations: (B, N, C), (B, N) -> (B, T, C) and phone progress (B, T).

    Progress is how far (0..1) each frame is into its phoneme, which tells the towers where in a sound
    they are (the moment of a lip closure within /p/).
    """
    b = h.shape[0]
    ends = durations.cumsum(dim=1)  # (B, N)
    frame_idx = torch.arange(frames, device=h.device)[None].expand(b, -1)  # (B, T)
    token = torch.searchsorted(ends, frame_idx.contiguous(), right=True).clamp(max=h.shape[1] - 1)  # (B, T)
    start = ends.gather(1, token) - durations.gather(1, token)
    length = durations.gather(1, token).clamp(min=1)
    progress = ((frame_idx - start).float() + 0.5) / length.float()
    return h.gather(1, token[..., None].expand(-1, -1, h.shape[2])), progress.clamp(0.0, 1.0)


# -------------------------------------------------------------------------------------------------
# Head-pose VAE
# -------------------------------------------------------------------------------------------------


class HeadVAE(nn.Module):
    """Temporal convolutional VAE of head pose: (B, T, E) <-> latent (B, T, L)."""

    scale: Tensor

    def __init__(self, latent: int, hidden: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(HEAD_DIM, hidden, 5, padding=2), nn.GELU(), nn.Conv1d(hidden, 2 * latent, 5, padding=2)
        )
        self.decoder = nn.Sequential(
            nn.Conv1d(latent, hidden, 5, padding=2), nn.GELU(), nn.Conv1d(hidden, HEAD_DIM, 5, padding=2)
        )
        self.register_buffer("scale", torch.ones(HEAD_DIM))  # per-channel std of the training data

    def encode(self, pose: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, E) -> mean and log-variance (B, T, L)."""
        stats = self.encoder((pose / self.scale).transpose(1, 2)).transpose(1, 2)
        mean, logvar = stats.chunk(2, dim=-1)
        return mean, logvar.clamp(-10.0, 5.0)

    def decode(self, z: Tensor) -> Tensor:
        """(B, T, L) -> (B, T, E)."""
        return self.decoder(z.transpose(1, 2)).transpose(1, 2) * self.scale

    def loss(self, pose: Tensor, kl_weight: float = 1e-3) -> Tensor:
        """Reconstruction (L1, in data-std units) plus a small KL term."""
        mean, logvar = self.encode(pose)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        recon = (self.decode(z) - pose).abs().div(self.scale).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return recon + kl_weight * kl


# -------------------------------------------------------------------------------------------------
# The joint model
# -------------------------------------------------------------------------------------------------


class AVFlow(nn.Module):
    """Text (+ partner) -> velocity fields of speech features and motion; see the module docstring."""

    speech_mean: Tensor
    speech_std: Tensor
    motion_mean: Tensor
    motion_std: Tensor

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        c = config.d_model
        self.config = config
        self.motion_channels = FACE_DIM + config.head_latent  # M
        # Text-to-tokens module (Matcha-TTS-like)
        self.embed = nn.Embedding(vocab_size, c, padding_idx=0)
        self.speaker = nn.Embedding(len(config.voices), c)
        self.encoder = nn.ModuleList(
            EncoderLayer(c, config.heads, config.ff_mult, config.dropout) for _ in range(config.text_layers)
        )
        self.encoder_norm = nn.LayerNorm(c)
        self.duration = nn.Sequential(
            nn.Conv1d(c, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(c, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(c, 1, 1),
        )
        self.no_text = nn.Parameter(torch.zeros(c))  # the condition in audio-driven mode
        self.progress = nn.Linear(1, c)
        self.frame_net = nn.Sequential(nn.Linear(c, c), nn.GELU(approximate="tanh"), nn.Linear(c, c))
        f = config.speech_dim  # F
        self.prior_speech = nn.Linear(c, f)
        self.prior_motion = nn.Linear(c, self.motion_channels)
        self.partner = nn.Sequential(nn.Linear(PARTNER_DIM, c), nn.GELU(approximate="tanh"), nn.Linear(c, c))
        # Two DiT towers with in-context conditioning and highway fusion
        self.time = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, c))
        self.in_speech = nn.Linear(2 * f, c)
        self.in_motion = nn.Linear(2 * self.motion_channels, c)
        self.speech_blocks = nn.ModuleList(
            DiTBlock(c, config.heads, config.ff_mult, config.dropout) for _ in range(config.blocks)
        )
        self.motion_blocks = nn.ModuleList(
            DiTBlock(c, config.heads, config.ff_mult, config.dropout) for _ in range(config.blocks)
        )
        self.highways = nn.ModuleList(Highway(c) for _ in range(config.blocks))
        self.out_speech = FinalLayer(c, f)
        self.out_motion = FinalLayer(c, self.motion_channels)
        self.head_vae = HeadVAE(config.head_latent)
        # Normalisation of the outputs (set from the training data before training)
        self.register_buffer("speech_mean", torch.zeros(f))
        self.register_buffer("speech_std", torch.ones(f))
        self.register_buffer("motion_mean", torch.zeros(self.motion_channels))
        self.register_buffer("motion_std", torch.ones(self.motion_channels))

    # --- text -> per-frame condition --------------------------------------------------------------

    def encode_text(self, tokens: Tensor, valid: Tensor, speaker: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N) ids, (B, N) mask, (B,) speaker -> token states (B, N, C), log(1 + duration) (B, N)."""
        h = self.embed(tokens) + self.speaker(speaker)[:, None]
        mask = attention_mask(valid, None)
        for layer in self.encoder:
            h = layer(h, mask, valid)
        h = self.encoder_norm(h) * valid[..., None]
        log_dur = self.duration(h.detach().transpose(1, 2)).squeeze(1) * valid  # Matcha: no grad to encoder
        return h, log_dur

    def condition(
        self, h: Tensor, durations: Tensor, frames: int, speaker: Tensor, text: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-frame condition (B, T, C) and priors mu_speech (B, T, F), mu_motion (B, T, M).

        ``text`` (B,) bool: False rows get the "no text" condition (audio-driven mode).
        """
        hf, progress = upsample(h, durations, frames)  # (B, T, C), (B, T)
        hf = hf + self.progress(progress[..., None])
        hf = torch.where(text[:, None, None], hf, self.no_text.expand_as(hf))
        cond = self.frame_net(hf) + self.speaker(speaker)[:, None]
        return cond, self.prior_speech(cond), self.prior_motion(cond)

    # --- the two towers ---------------------------------------------------------------------------

    def velocity(
        self,
        xs: Tensor,
        xm: Tensor,
        ts: Tensor,
        tm: Tensor,
        cond: Tensor,
        mu_s: Tensor,
        mu_m: Tensor,
        partner: Tensor,
        valid: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Velocities of speech (B, T, F) and motion (B, T, M) at flow times ts, tm (B,)."""
        c = self.config.d_model
        mask = attention_mask(valid, self.config.window)
        temb_s = self.time(time_embedding(ts, c))  # (B, C)
        temb_m = self.time(time_embedding(tm, c))
        hs = self.in_speech(torch.cat([xs, mu_s], dim=-1)) + cond  # in-context conditioning
        hm = self.in_motion(torch.cat([xm, mu_m], dim=-1)) + cond + self.partner(partner)
        for speech_block, motion_block, highway in zip(
            self.speech_blocks, self.motion_blocks, self.highways, strict=True
        ):
            hs, hm = speech_block(hs, temb_s, mask), motion_block(hm, temb_m, mask)
            hs, hm = highway(hs, hm)
        return self.out_speech(hs, temb_s), self.out_motion(hm, temb_m)

    # --- normalisation ----------------------------------------------------------------------------

    def normalize(self, speech: Tensor, motion: Tensor) -> tuple[Tensor, Tensor]:
        """Raw speech features (.., F) and motion-tower targets (.., M) -> unit-scale."""
        return (speech - self.speech_mean) / self.speech_std, (motion - self.motion_mean) / self.motion_std

    def denormalize(self, speech: Tensor, motion: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`normalize`."""
        return speech * self.speech_std + self.speech_mean, motion * self.motion_std + self.motion_mean

    def motion_targets(self, motion: Tensor) -> Tensor:
        """Motion frames (B, T, D) -> tower channels (B, T, M): face fields and the head-pose latent mean."""
        with torch.no_grad():
            latent, _ = self.head_vae.encode(motion[..., FACE_DIM:])
        return torch.cat([motion[..., :FACE_DIM], latent], dim=-1)

    @torch.inference_mode()
    def motion_frames(self, channels: Tensor) -> Tensor:
        """Tower channels (B, T, M) -> motion frames (B, T, D) (inference only)."""
        head = self.head_vae.decode(channels[..., FACE_DIM:])
        return torch.cat([channels[..., :FACE_DIM], head], dim=-1)
