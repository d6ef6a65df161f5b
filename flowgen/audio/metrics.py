"""Signal metrics: SI-SDR/SDR (and improvements), PESQ, STOI, mel-cepstral distortion, F0 error.

Nothing here downloads a model. Waveform metrics take ``(..., T)`` tensors and return one value
per leading index; ``estimate`` always comes before ``reference``. PESQ, STOI and the BSS-eval
SDR need the optional extra ``pip install 'flowgen[audio-metrics]'`` (``pesq``, ``pystoi``,
``fast_bss_eval``) and import them only when called.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

from flowgen.audio.features import FeatureConfig, log_mel
from flowgen.errors import InputError

_DB = 10.0 / math.log(10.0)  # natural-log units -> dB


def si_sdr(
    estimate: torch.Tensor, reference: torch.Tensor, *, zero_mean: bool = True
) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB.

    Le Roux et al., "SDR -- half-baked or well done?", ICASSP 2019, eqs. (3)-(4): the
    reference is scaled by the least-squares gain ``a = <est, ref> / |ref|^2`` and
    ``SI-SDR = 10 log10(|a ref|^2 / |a ref - est|^2)``, so rescaling ``estimate`` leaves it
    unchanged. Computed in float64; a perfect estimate gives a large finite value
    (about +200 dB for unit-variance signals, from the float64 epsilon guard) rather than inf.

    Args:
        estimate: ``(..., T)`` estimated signal.
        reference: ``(..., T)`` clean reference, same shape.
        zero_mean: Subtract each signal's mean first (as in the paper's evaluation).

    Returns:
        ``(...)`` float64 tensor.
    """
    est, ref = _pair(estimate, reference)
    if zero_mean:
        est = est - est.mean(dim=-1, keepdim=True)
        ref = ref - ref.mean(dim=-1, keepdim=True)
    _require_nonsilent(ref)
    eps = torch.finfo(torch.float64).eps
    scale = ((est * ref).sum(-1, keepdim=True) + eps) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = target - est
    return _DB * torch.log(((target**2).sum(-1) + eps) / ((noise**2).sum(-1) + eps))


def sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Plain signal-to-distortion ratio ``10 log10(|ref|^2 / |ref - est|^2)`` in dB.

    The "SDR" of the Music Demixing Challenge (Mitsufuji et al., Front. Signal Process. 2021,
    eq. 1): no projection or filtering, so gain errors count as distortion. For the BSS-eval
    definition that forgives a short distortion filter use :func:`bss_sdr`.

    Returns:
        ``(...)`` float64 tensor (large and finite for a perfect estimate, as in :func:`si_sdr`).
    """
    est, ref = _pair(estimate, reference)
    _require_nonsilent(ref)
    eps = torch.finfo(torch.float64).eps
    return _DB * torch.log(((ref**2).sum(-1) + eps) / (((ref - est) ** 2).sum(-1) + eps))


def bss_sdr(
    estimate: torch.Tensor, reference: torch.Tensor, *, filter_length: int = 512
) -> torch.Tensor:
    """BSS-eval SDR in dB: the reference may pass through a ``filter_length``-tap filter.

    Vincent, Gribonval & Févotte, IEEE TASLP 2006, eq. (12), with the time-invariant
    512-tap filter of BSS-eval v4 (Stöter et al., LVA/ICA 2018): the estimate is projected
    onto the span of delayed copies of its own reference (one source per signal; interference
    from other sources is not modelled). Computed by ``fast_bss_eval`` (Scheibler, ICASSP
    2022), which agrees with an exact least-squares projection to 1e-6 dB. Needs the
    ``audio-metrics`` extra.

    Returns:
        ``(...)`` float64 tensor.
    """
    try:
        import fast_bss_eval
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "bss_sdr needs fast_bss_eval: pip install 'flowgen[audio-metrics]'"
        ) from err
    est, ref = _pair(estimate, reference)
    _require_nonsilent(ref)
    if filter_length < 1:
        raise InputError(f"filter_length must be >= 1, got {filter_length}")
    value = fast_bss_eval.sdr(ref[..., None, :], est[..., None, :], filter_length=filter_length)
    return value[..., 0]


def si_sdr_improvement(
    estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """SI-SDRi: SI-SDR of the estimate minus that of the unprocessed mixture, in dB."""
    return si_sdr(estimate, reference) - si_sdr(mixture, reference)


def sdr_improvement(
    estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor
) -> torch.Tensor:
    """SDRi: :func:`sdr` of the estimate minus that of the unprocessed mixture, in dB."""
    return sdr(estimate, reference) - sdr(mixture, reference)


def pesq(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    *,
    mode: Literal["wb", "nb"] | None = None,
) -> torch.Tensor:
    """Perceptual Evaluation of Speech Quality, MOS-LQO (ITU-T P.862.2 wide band, P.862 narrow).

    Wide band runs at 16 kHz (scores about 1.04-4.64), narrow band at 8 kHz (about 1.0-4.55).
    Signals at other rates are resampled to 16 kHz (``"wb"``) or 8 kHz (``"nb"``) first. Uses
    the ``pesq`` package (ITU reference C code; note its licence terms). Needs the
    ``audio-metrics`` extra.

    Args:
        estimate: ``(..., T)`` degraded/processed speech.
        reference: ``(..., T)`` clean speech.
        sample_rate: Rate of both signals in Hz.
        mode: ``"wb"`` or ``"nb"``; default ``"wb"`` unless ``sample_rate`` is 8000.

    Raises:
        InputError: If the reference is silent, holds no speech PESQ can detect, or is shorter
            than PESQ's 1/4 s minimum.
    """
    try:
        import pesq as pesq_lib
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pesq needs the pesq package: pip install 'flowgen[audio-metrics]'"
        ) from err
    mode = mode or ("nb" if sample_rate == 8000 else "wb")
    if mode not in ("wb", "nb"):
        raise InputError(f"mode must be 'wb' or 'nb', got {mode!r}")
    rate = 16000 if mode == "wb" else 8000
    est, ref = _at_rate(estimate, reference, sample_rate, rate)
    _require_nonsilent(ref)

    def one(e: np.ndarray, r: np.ndarray) -> float:
        try:
            return pesq_lib.pesq(rate, r, e, mode)
        except pesq_lib.PesqError as err:
            raise InputError(f"PESQ failed: {type(err).__name__}: {err}") from err

    return _per_signal(one, est, ref)


def stoi(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    *,
    extended: bool = False,
) -> torch.Tensor:
    """Short-Time Objective Intelligibility in [0, 1] (Taal et al., IEEE TASLP 2011).

    ``extended=True`` gives ESTOI (Jensen & Taal, IEEE TASLP 2016). Computed by ``pystoi``,
    which resamples to 10 kHz and drops silent frames itself. Needs the ``audio-metrics`` extra.

    Raises:
        InputError: If too few non-silent frames remain to compute it (pystoi would return
            1e-5 with a warning).
    """
    try:
        import pystoi
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("stoi needs pystoi: pip install 'flowgen[audio-metrics]'") from err
    est, ref = _at_rate(estimate, reference, sample_rate, sample_rate)

    def one(e: np.ndarray, r: np.ndarray) -> float:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = pystoi.stoi(r, e, sample_rate, extended=extended)
        if any("Not enough STFT frames" in str(w.message) for w in caught):
            raise InputError(
                "STOI needs at least 30 non-silent 25.6 ms frames (~0.4 s of speech); "
                "the reference is too short or silent"
            )
        return value

    return _per_signal(one, est, ref)


def mel_cepstral_distortion(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    config: FeatureConfig,
    *,
    n_coefficients: int = 24,
    align: Literal["none", "dtw"] = "none",
    sample_rate: int | None = None,
) -> torch.Tensor:
    """Mel-cepstral distortion in dB, averaged over frames, c_0 (level) excluded.

    Per frame ``MCD = 10 / ln 10 * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2)`` (Kubichek, IEEE
    PACRIM 1993). The cepstra are the cosine-series coefficients of the natural-log mel
    *amplitude* spectrum of ``config`` (``log_mel / power``):
    ``c_m = (1/M) sum_k log S_k cos(pi m (k + 1/2) / M)``, the convention of SPTK's mel-cepstrum
    (``log|H| = c_0 + 2 sum_m c_m cos(m w)``) that the factor 2 assumes. Values are therefore on
    the scale of, but not identical to, MCD from SPTK/WORLD mcep analysis (different spectral
    estimate and warping). Every frame counts, silence included.

    Args:
        estimate: ``(..., T)`` signal; with ``align="dtw"`` a 1-D signal of any length.
        reference: ``(..., T)`` signal; with ``align="dtw"`` a 1-D signal of any length.
        config: Feature parameters for the log-mel analysis.
        n_coefficients: D, the cepstral coefficients c_1..c_D compared (< n_mels).
        align: ``"none"`` compares frame n with frame n (same lengths needed, e.g. vocoder
            resynthesis); ``"dtw"`` first aligns the frames by dynamic time warping on the
            cepstral distance (librosa.sequence.dtw) and averages along the path (TTS output
            against a recording).
        sample_rate: Rate of the signals, checked against ``config.sample_rate`` if given.

    Returns:
        ``(...)`` float64 tensor in dB (a 0-d tensor for ``align="dtw"``).
    """
    if not 1 <= n_coefficients < config.n_mels:
        raise InputError(
            f"n_coefficients must be in [1, n_mels={config.n_mels}), got {n_coefficients}"
        )
    if align not in ("none", "dtw"):
        raise InputError(f"align must be 'none' or 'dtw', got {align!r}")
    if align == "none" and estimate.shape != reference.shape:
        raise InputError(
            f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in "
            "shape; pass align='dtw' to compare signals of different lengths"
        )
    if align == "dtw" and (estimate.ndim != 1 or reference.ndim != 1):
        raise InputError("align='dtw' takes 1-D signals")
    c_est = _mel_cepstrum(estimate, config, n_coefficients, sample_rate)  # (..., N, D)
    c_ref = _mel_cepstrum(reference, config, n_coefficients, sample_rate)
    if align == "none":
        return (_DB * torch.sqrt(2 * ((c_est - c_ref) ** 2).sum(-1))).mean(-1)
    import librosa

    cost = (
        _DB
        * math.sqrt(2.0)
        * torch.cdist(c_est, c_ref, compute_mode="donot_use_mm_for_euclid_dist")
    )  # (N_est, N_ref)
    _, path = librosa.sequence.dtw(C=cost.numpy())
    return cost[path[:, 0], path[:, 1]].mean()


def f0_rmse(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    *,
    estimate_voiced: torch.Tensor | None = None,
    reference_voiced: torch.Tensor | None = None,
    unit: Literal["hz", "cents"] = "hz",
) -> float:
    """Root-mean-square F0 error over the frames voiced in both contours.

    Args:
        estimate: ``(N,)`` F0 in Hz (e.g. :attr:`flowgen.audio.features.Pitch.f0`).
        reference: ``(N,)`` F0 in Hz on the same frame grid.
        estimate_voiced: ``(N,)`` bool; default ``estimate > 0`` (unvoiced frames hold 0).
        reference_voiced: ``(N,)`` bool; default ``reference > 0``.
        unit: ``"hz"``, or ``"cents"`` for ``1200 log2(est / ref)``.

    Raises:
        InputError: If the shapes differ or no frame is voiced in both.
    """
    est, ref = _voiced_pair(estimate, reference, estimate_voiced, reference_voiced)
    if unit == "hz":
        err = est - ref
    elif unit == "cents":
        err = 1200.0 * torch.log2(est / ref)
    else:
        raise InputError(f"unit must be 'hz' or 'cents', got {unit!r}")
    return float(torch.sqrt((err**2).mean()))


def f0_correlation(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    *,
    estimate_voiced: torch.Tensor | None = None,
    reference_voiced: torch.Tensor | None = None,
) -> float:
    """Pearson correlation of two F0 contours over the frames voiced in both.

    Arguments as in :func:`f0_rmse`.

    Raises:
        InputError: If fewer than two frames are voiced in both, or a contour is constant there.
    """
    est, ref = _voiced_pair(estimate, reference, estimate_voiced, reference_voiced)
    if est.numel() < 2:
        raise InputError("F0 correlation needs at least two frames voiced in both contours")
    est, ref = est - est.mean(), ref - ref.mean()
    denom = torch.sqrt((est**2).sum() * (ref**2).sum())
    if denom == 0:
        raise InputError(
            "an F0 contour is constant over the common voiced frames; correlation is undefined"
        )
    return float((est * ref).sum() / denom)


def _pair(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, x in (("estimate", estimate), ("reference", reference)):
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] == 0:
            raise InputError(f"{name} must be (..., T) with T > 0, got shape {tuple(x.shape)}")
    if estimate.shape != reference.shape:
        raise InputError(
            f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} must have "
            "the same shape"
        )
    est, ref = estimate.detach().double(), reference.detach().double()
    if not (torch.isfinite(est).all() and torch.isfinite(ref).all()):
        raise InputError("estimate or reference contains NaN or Inf samples")
    return est, ref


def _require_nonsilent(reference: torch.Tensor) -> None:
    if (reference.abs().amax(dim=-1) == 0).any():
        raise InputError("reference is silent (all zeros); the ratio is undefined")


def _at_rate(
    estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int, rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    est, ref = _pair(estimate, reference)
    if sample_rate != rate:
        from flowgen.audio.io import resample

        est, ref = resample(est, sample_rate, rate), resample(ref, sample_rate, rate)
    return est, ref


def _per_signal(fn, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    lead = est.shape[:-1]
    e = est.reshape(-1, est.shape[-1]).numpy()
    r = ref.reshape(-1, ref.shape[-1]).numpy()
    values = [fn(e[i], r[i]) for i in range(e.shape[0])]
    return torch.tensor(values, dtype=torch.float64).reshape(lead)


def _mel_cepstrum(
    waveform: torch.Tensor, config: FeatureConfig, n_coefficients: int, sample_rate: int | None
) -> torch.Tensor:
    log_amp = log_mel(waveform.float(), config, sample_rate=sample_rate).double() / config.power
    m = config.n_mels
    k = torch.arange(m, dtype=torch.float64)
    d = torch.arange(1, n_coefficients + 1, dtype=torch.float64)
    basis = torch.cos(math.pi * d[:, None] * (k[None, :] + 0.5) / m) / m  # (D, M)
    return torch.einsum("...mn,dm->...nd", log_amp, basis)  # (..., N, D)


def _voiced_pair(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    estimate_voiced: torch.Tensor | None,
    reference_voiced: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    est = torch.as_tensor(estimate, dtype=torch.float64)
    ref = torch.as_tensor(reference, dtype=torch.float64)
    if est.ndim != 1 or est.shape != ref.shape:
        raise InputError(
            f"F0 contours must be 1-D and of equal length, got {tuple(est.shape)} and "
            f"{tuple(ref.shape)}"
        )
    ev = est > 0 if estimate_voiced is None else torch.as_tensor(estimate_voiced, dtype=torch.bool)
    rv = (
        ref > 0 if reference_voiced is None else torch.as_tensor(reference_voiced, dtype=torch.bool)
    )
    both = ev & rv & (est > 0) & (ref > 0)
    if not both.any():
        raise InputError("no frame is voiced in both F0 contours")
    return est[both], ref[both]
