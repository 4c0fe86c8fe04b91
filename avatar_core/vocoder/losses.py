"""Training losses of the vocoder: multi-resolution STFT (spectral convergence + log magnitude) and
multi-resolution log-mel L1. Letters: B batch, S samples, N bins, K frames, M mel bands."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avatar_core.speech.mel import mel_filters

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop)
MEL_BANDS = {512: 40, 1024: 80, 2048: 128}


def _magnitude(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:  # (B, S) -> (B, N, K)
    window = torch.hann_window(n_fft, device=audio.device)
    spec = torch.stft(audio, n_fft, hop, window=window, center=True, return_complex=True)
    return spec.abs().clamp_min(1e-5)


def vocoder_losses(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, S) each -> {"stft", "mel"} scalar losses, averaged over the resolutions."""
    stft = pred.new_zeros(())
    mel = pred.new_zeros(())
    for n_fft, hop in RESOLUTIONS:
        p, t = _magnitude(pred, n_fft, hop), _magnitude(target, n_fft, hop)
        convergence = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-5)
        stft = stft + convergence + F.l1_loss(p.log(), t.log())
        fb = mel_filters(n_fft, MEL_BANDS[n_fft], pred.device)
        mel = mel + F.l1_loss((fb @ p).clamp_min(1e-5).log(), (fb @ t).clamp_min(1e-5).log())
    n = len(RESOLUTIONS)
    return {"stft": stft / n, "mel": mel / n}
