import pytest
import torch

from flowgen.audio.loudness import integrated_loudness, normalize_loudness
from flowgen.errors import InputError
from tests.audio.signals import noise, tone


@pytest.mark.parametrize("sample_rate", [48000, 44100])
def test_full_scale_997hz_sine_reads_minus_3_01_lufs(sample_rate):
    # ITU-R BS.1770-4, annex 1: a 0 dBFS 997 Hz sine in one channel is -3.01 LUFS
    x = tone(997, sample_rate, 2.0, amplitude=1.0)
    assert integrated_loudness(x, sample_rate) == pytest.approx(-3.01, abs=0.005)


def test_level_and_stereo_sum():
    x = tone(997, 48000, 2.0, amplitude=0.1)  # -20 dB
    assert integrated_loudness(x, 48000) == pytest.approx(-23.01, abs=0.005)
    stereo = torch.stack([x, x])  # channels add in power: +3.01 dB
    assert integrated_loudness(stereo, 48000) == pytest.approx(-20.0, abs=0.005)


@pytest.mark.parametrize("target", [-14.0, -23.0, -30.0])
def test_normalize_reaches_target(target):
    x = noise(16000 * 2, std=0.05).reshape(1, -1)
    y = normalize_loudness(x, 16000, target)
    assert y.shape == x.shape
    assert integrated_loudness(y, 16000) == pytest.approx(target, abs=0.01)


def test_refusals():
    with pytest.raises(InputError, match="silent"):
        normalize_loudness(torch.zeros(16000), 16000)
    with pytest.raises(InputError, match="at least 0.4 s"):
        integrated_loudness(tone(440, 16000, 0.3), 16000)
    with pytest.raises(InputError, match="at most 5 channels"):
        integrated_loudness(torch.zeros(6, 16000), 16000)
    with pytest.raises(InputError, match="negative"):
        normalize_loudness(tone(440, 16000, 1.0), 16000, 3.0)
