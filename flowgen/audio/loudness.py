"""Loudness measurement and normalisation (ITU-R BS.1770-4 integrated loudness, in LUFS).

Measured with ``pyloudnorm`` (Steinmetz & Reiss, "pyloudnorm: A simple yet flexible loudness
meter in Python", AES 2021), a maintained implementation of the two-stage gating of ITU-R
BS.1770-4, with the K-weighting filters derived per sample rate as in B. De Man, "Evaluation of
implementations of the EBU R128 loudness measurement", AES 2018 (pyloudnorm's "DeMan" class: a
full-scale 997 Hz sine in one channel measures -3.010 LUFS at 48 and 44.1 kHz, the standard's
calibration point; pyloudnorm's default design reads -3.05). A core dependency, imported only
when loudness is used.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowgen.errors import InputError

BLOCK_SECONDS = 0.4  # BS.1770 gating block: shorter signals have no integrated loudness
MAX_CHANNELS = 5  # BS.1770 channel weights are defined for L, R, C, Ls, Rs


def _meter(sample_rate: int):
    import pyloudnorm

    # De Man's K-weighting design reproduces the standard's 48 kHz coefficients at any rate
    return pyloudnorm.Meter(sample_rate, filter_class="DeMan")


def integrated_loudness(waveform: torch.Tensor, sample_rate: int) -> float:
    """Integrated, gated loudness of a signal in LUFS (ITU-R BS.1770-4, eqs. 1-2).

    Args:
        waveform: ``(C, T)`` or ``(T,)`` float signal in [-1, 1] full scale, C <= 5.
        sample_rate: Sampling rate in Hz.

    Returns:
        Loudness in LUFS; ``-inf`` for digital silence (every block below the -70 LUFS gate).

    Raises:
        InputError: If the signal is shorter than one 400 ms gating block, has more than five
            channels or is not finite.
    """
    x = _as_channels_first(waveform)
    channels, samples = x.shape
    if channels > MAX_CHANNELS:
        raise InputError(f"BS.1770 loudness is defined for at most 5 channels, got {channels}")
    if samples < math.ceil(BLOCK_SECONDS * sample_rate):
        raise InputError(
            f"signal is {samples / sample_rate:.3f} s long; integrated loudness needs at least "
            f"{BLOCK_SECONDS} s (one BS.1770 gating block)"
        )
    if not torch.isfinite(x).all():
        raise InputError("signal contains NaN or Inf samples; loudness is undefined")
    data = x.detach().to("cpu", torch.float64).numpy().T  # (T, C) as pyloudnorm expects
    return float(_meter(sample_rate).integrated_loudness(np.ascontiguousarray(data)))


def normalize_loudness(
    waveform: torch.Tensor, sample_rate: int, target_lufs: float = -23.0
) -> torch.Tensor:
    """Scale a signal so that its integrated loudness is ``target_lufs``.

    The default -23 LUFS is the EBU R 128 programme level. The gain is applied to all channels
    alike; peaks may exceed full scale after a large gain (``save_audio`` then refuses integer
    formats rather than clipping silently).

    Args:
        waveform: ``(C, T)`` or ``(T,)`` float signal.
        sample_rate: Sampling rate in Hz.
        target_lufs: Target loudness in LUFS (must be negative and finite).

    Returns:
        The scaled signal, same shape and dtype.

    Raises:
        InputError: If the target is not a finite negative number, the signal is silent (its
            loudness is -inf, so no gain reaches the target), or :func:`integrated_loudness`
            refuses it.
    """
    if not (math.isfinite(target_lufs) and target_lufs < 0):
        raise InputError(f"target loudness must be a finite negative LUFS value, got {target_lufs}")
    measured = integrated_loudness(waveform, sample_rate)
    if not math.isfinite(measured):
        raise InputError("signal is silent (loudness -inf LUFS); it cannot be normalised")
    gain = 10.0 ** ((target_lufs - measured) / 20.0)
    return waveform * gain


def _as_channels_first(waveform: torch.Tensor) -> torch.Tensor:
    if not isinstance(waveform, torch.Tensor):
        raise InputError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.ndim == 1:
        return waveform[None]
    if waveform.ndim != 2:
        raise InputError(f"waveform must be (C, T) or (T,), got shape {tuple(waveform.shape)}")
    return waveform
