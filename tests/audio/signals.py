"""Synthetic test signals with known properties, shared by the audio tests."""

from __future__ import annotations

import math

import torch


def tone(freq: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> torch.Tensor:
    """``(T,)`` float32 sine of ``freq`` Hz."""
    t = torch.arange(round(sample_rate * seconds), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def noise(num_samples: int, *, seed: int = 0, std: float = 0.1) -> torch.Tensor:
    """``(T,)`` float32 white Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    return (std * torch.randn(num_samples, generator=g, dtype=torch.float64)).float()


def speech_like(sample_rate: int = 16000, seconds: float = 3.0, *, seed: int = 0) -> torch.Tensor:
    """``(T,)`` float32 vowel-like signal: a gliding glottal pulse train through three moving
    formant resonances, in 4 Hz syllables separated by pauses (enough for PESQ's voice activity
    detection and STOI's silent-frame removal to find speech)."""
    from scipy.signal import lfilter

    g = torch.Generator().manual_seed(seed)
    n = round(sample_rate * seconds)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 120 + 30 * torch.sin(2 * math.pi * 0.7 * t)
    phase = torch.cumsum(f0 / sample_rate, 0)
    source = (torch.diff(torch.floor(phase), prepend=torch.zeros(1)) > 0).double()  # pulses
    source = source + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64)
    block = sample_rate // 8
    for start in range(0, n, block):  # formants piecewise constant over 125 ms blocks
        seg = source[start : start + block].numpy()
        out = 0
        for base in (500.0, 1500.0, 2500.0):
            f = base * (0.8 + 0.4 * torch.rand(1, generator=g).item())
            r = math.exp(-math.pi * 80 / sample_rate)
            a = [1, -2 * r * math.cos(2 * math.pi * f / sample_rate), r * r]
            out = out + lfilter([1.0], a, seg)
        x[start : start + block] = torch.from_numpy(out)
    syllables = torch.clamp(torch.sin(2 * math.pi * 2 * t), min=0) ** 0.5  # 4 Hz bursts, pauses
    x = x * syllables
    return (0.3 * x / x.abs().max()).float()


def add_noise_at_snr(signal: torch.Tensor, snr_db: float, *, seed: int = 0) -> torch.Tensor:
    """``signal`` plus white noise scaled to ``snr_db`` dB below it (energy ratio)."""
    n = noise(signal.shape[-1], seed=seed, std=1.0).double()
    n = n * signal.double().norm() / n.norm() * 10 ** (-snr_db / 20)
    return (signal.double() + n).float()
