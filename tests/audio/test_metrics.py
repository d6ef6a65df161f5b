import math

import pytest
import torch

from flowgen.audio import metrics
from flowgen.audio.features import FeatureConfig
from flowgen.errors import InputError
from tests.audio.signals import add_noise_at_snr, noise, speech_like, tone

CONFIG = FeatureConfig(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=256, n_mels=80)


def _orthogonal_noise(reference: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """Zero-mean noise orthogonal to the zero-mean reference at exactly ``snr_db``."""
    ref = reference.double() - reference.double().mean(-1, keepdim=True)
    n = noise(reference.shape[-1], seed=seed, std=1.0).double()
    n = n - n.mean()
    n = n - (n * ref).sum(-1, keepdim=True) / (ref * ref).sum(-1, keepdim=True) * ref
    return n * ref.norm(dim=-1, keepdim=True) / n.norm(dim=-1, keepdim=True) * 10 ** (-snr_db / 20)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_si_sdr_of_noise_at_known_snr(snr):
    ref = torch.stack([noise(16000, seed=1), tone(300, 16000, 1.0)]).double()
    estimate = ref + _orthogonal_noise(ref, snr)
    torch.testing.assert_close(
        metrics.si_sdr(estimate, ref), torch.full((2,), snr, dtype=torch.float64), atol=0.1, rtol=0
    )
    torch.testing.assert_close(
        metrics.sdr(estimate, ref), torch.full((2,), snr, dtype=torch.float64), atol=0.1, rtol=0
    )


def test_si_sdr_is_scale_invariant_and_sdr_is_not():
    ref = tone(300, 16000, 1.0)
    estimate = add_noise_at_snr(ref, 12.0, seed=2)
    base = metrics.si_sdr(estimate, ref)
    for gain in (0.1, 3.0):
        torch.testing.assert_close(metrics.si_sdr(gain * estimate, ref), base)
    # plain SDR counts a gain error: |ref|^2 / |ref - 0.5 ref|^2 = 4 -> 6.02 dB
    assert float(metrics.sdr(0.5 * ref, ref)) == pytest.approx(10 * math.log10(4), abs=1e-6)
    assert float(metrics.si_sdr(0.5 * ref, ref)) > 100
    assert float(metrics.si_sdr(ref, ref)) > 100 and math.isfinite(float(metrics.si_sdr(ref, ref)))


def test_improvements():
    ref = speech_like(seconds=1.0)
    mixture = add_noise_at_snr(ref, 0.0, seed=3)
    estimate = add_noise_at_snr(ref, 10.0, seed=4)
    assert float(metrics.si_sdr_improvement(mixture, ref, mixture)) == 0.0
    assert float(metrics.sdr_improvement(estimate, ref, mixture)) == pytest.approx(10.0, abs=1e-4)
    gain = metrics.si_sdr_improvement(estimate, ref, mixture)
    torch.testing.assert_close(gain, metrics.si_sdr(estimate, ref) - metrics.si_sdr(mixture, ref))
    assert 9.5 < float(gain) < 10.5


def test_ratio_input_checks():
    x = torch.randn(100)
    with pytest.raises(InputError, match="same shape"):
        metrics.si_sdr(x, torch.randn(101))
    with pytest.raises(InputError, match="silent"):
        metrics.sdr(x, torch.zeros(100))
    with pytest.raises(InputError, match="NaN"):
        metrics.si_sdr(torch.full((100,), float("nan")), x)


def test_bss_sdr_forgives_a_short_filter():
    pytest.importorskip("fast_bss_eval")
    ref = noise(8000, seed=5).double()
    delayed = torch.nn.functional.pad(ref, (3, 0))  # ref delayed by 0..3 samples
    filtered = 0.7 * delayed[:-3] + 0.3 * delayed[2:-1]  # 0.7 x[n - 3] + 0.3 x[n - 1]
    assert float(metrics.sdr(filtered, ref)) < 0  # a plain SDR sees the filter as distortion
    # > 30 dB, not inf: the filter tail cut off at the end of the signal is left over
    assert float(metrics.bss_sdr(filtered, ref, filter_length=16)) > 30
    noisy = ref + _orthogonal_noise(ref, 10.0)
    value = metrics.bss_sdr(torch.stack([noisy, noisy]), torch.stack([ref, ref]), filter_length=64)
    assert value.shape == (2,)
    assert 10.0 <= float(value[0]) < 10.3  # the filter can only explain a little more


def test_pesq_orders_noise_levels():
    pytest.importorskip("pesq")
    ref = speech_like()
    assert float(metrics.pesq(ref, ref, 16000)) > 4.5
    assert float(metrics.pesq(ref, ref, 16000, mode="nb")) > 4.4
    scores = [
        float(metrics.pesq(add_noise_at_snr(ref, snr, seed=1), ref, 16000)) for snr in (40, 20, 5)
    ]
    assert scores == sorted(scores, reverse=True) and scores[0] < 4.5
    assert metrics.pesq(ref.repeat(2, 1), ref.repeat(2, 1), 16000).shape == (2,)
    with pytest.raises(InputError, match="silent"):
        metrics.pesq(torch.zeros(16000), torch.zeros(16000), 16000)
    with pytest.raises(InputError, match="PESQ failed: .*BufferTooShort"):
        metrics.pesq(ref[:1000], ref[:1000], 16000)


def test_pesq_resamples_other_rates():
    pytest.importorskip("pesq")
    from flowgen.audio.io import resample

    ref = resample(speech_like(), 16000, 24000)
    assert float(metrics.pesq(ref, ref, 24000)) > 4.5


def test_stoi_orders_noise_levels():
    pytest.importorskip("pystoi")
    ref = speech_like()
    assert float(metrics.stoi(ref, ref, 16000)) == pytest.approx(1.0, abs=1e-6)
    scores = [
        float(metrics.stoi(add_noise_at_snr(ref, snr, seed=1), ref, 16000)) for snr in (20, 5, -5)
    ]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.9
    assert float(metrics.stoi(ref, ref, 16000, extended=True)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="too short or silent"):
        metrics.stoi(tone(300, 16000, 0.2), tone(300, 16000, 0.2), 16000)


def test_mel_cepstral_distortion():
    ref = speech_like(seconds=1.0)
    assert float(metrics.mel_cepstral_distortion(ref, ref, CONFIG)) == 0.0
    mild = float(metrics.mel_cepstral_distortion(add_noise_at_snr(ref, 30.0), ref, CONFIG))
    strong = float(metrics.mel_cepstral_distortion(add_noise_at_snr(ref, 0.0), ref, CONFIG))
    assert 0 < mild < strong
    # a pure gain changes only c_0, which MCD leaves out
    assert float(metrics.mel_cepstral_distortion(0.5 * ref, ref, CONFIG)) < 1e-3
    batch = metrics.mel_cepstral_distortion(ref.repeat(3, 1), ref.repeat(3, 1), CONFIG)
    assert batch.shape == (3,)


def test_mel_cepstral_distortion_constant_matches_formula(monkeypatch):
    # log-mels differing by delta * cos(pi (k + 1/2) / M) move only c_1, by delta / 2, so
    # MCD = 10 / ln 10 * sqrt(2 (delta / 2)^2) on every frame
    m, frames, delta = CONFIG.n_mels, 7, 0.3
    monkeypatch.setattr(metrics, "log_mel", lambda log_mels, config, sample_rate=None: log_mels)
    k = torch.arange(m, dtype=torch.float64)
    base = torch.randn(m, frames, dtype=torch.float64)
    moved = base + delta * torch.cos(math.pi * (k + 0.5) / m)[:, None]
    value = float(metrics.mel_cepstral_distortion(moved, base, CONFIG))
    assert value == pytest.approx(10 / math.log(10) * math.sqrt(2 * (delta / 2) ** 2), rel=1e-5)
    moved_c25 = base + delta * torch.cos(math.pi * 25 * (k + 0.5) / m)[:, None]
    assert float(metrics.mel_cepstral_distortion(moved_c25, base, CONFIG)) < 1e-5  # beyond D=24


def test_mel_cepstral_distortion_dtw():
    ref = speech_like(seconds=1.0)
    assert float(metrics.mel_cepstral_distortion(ref, ref, CONFIG, align="dtw")) == 0.0
    shorter = ref[:14000]
    with pytest.raises(InputError, match="align='dtw'"):
        metrics.mel_cepstral_distortion(shorter, ref, CONFIG)
    aligned = float(metrics.mel_cepstral_distortion(shorter, ref, CONFIG, align="dtw"))
    noisy = float(
        metrics.mel_cepstral_distortion(add_noise_at_snr(ref, 0.0), ref, CONFIG, align="dtw")
    )
    assert 0 <= aligned < noisy
    with pytest.raises(InputError, match="n_coefficients"):
        metrics.mel_cepstral_distortion(ref, ref, CONFIG, n_coefficients=80)


def test_f0_rmse_and_correlation_on_known_contours():
    ref = torch.linspace(100.0, 200.0, 50)
    est = ref + 10.0
    assert metrics.f0_rmse(est, ref) == pytest.approx(10.0)
    assert metrics.f0_correlation(est, ref) == pytest.approx(1.0)
    assert metrics.f0_correlation(300.0 - ref, ref) == pytest.approx(-1.0)
    octave = metrics.f0_rmse(2 * ref, ref, unit="cents")
    assert octave == pytest.approx(1200.0)
    # frames unvoiced in either contour are left out, by f0 == 0 or by explicit masks
    est_gaps = est.clone()
    est_gaps[:10] = 0.0
    est_gaps[10:20] = 1000.0
    mask = torch.ones(50, dtype=torch.bool)
    mask[10:20] = False
    assert metrics.f0_rmse(est_gaps, ref, estimate_voiced=mask) == pytest.approx(10.0)
    ref_gaps = ref.clone()
    ref_gaps[40:] = 0.0
    assert metrics.f0_rmse(est, ref_gaps) == pytest.approx(10.0)


def test_f0_metric_errors():
    ref = torch.linspace(100.0, 200.0, 10)
    with pytest.raises(InputError, match="no frame is voiced in both"):
        metrics.f0_rmse(torch.zeros(10), ref)
    with pytest.raises(InputError, match="equal length"):
        metrics.f0_rmse(ref[:5], ref)
    with pytest.raises(InputError, match="constant"):
        metrics.f0_correlation(torch.full((10,), 150.0), ref)
    with pytest.raises(InputError, match="unit"):
        metrics.f0_rmse(ref, ref, unit="semitones")


def test_f0_metrics_on_extracted_pitch():
    from flowgen.audio.features import f0

    ref = f0(tone(200, 16000, 0.5), CONFIG)
    est = f0(tone(210, 16000, 0.5), CONFIG)
    assert metrics.f0_rmse(
        est.f0, ref.f0, estimate_voiced=est.voiced, reference_voiced=ref.voiced
    ) == pytest.approx(10.0, rel=0.1)
