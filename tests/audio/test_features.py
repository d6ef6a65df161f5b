import dataclasses
import json

import numpy as np
import pytest
import torch

from flowgen.audio.features import (
    FeatureConfig,
    LogMel,
    energy,
    f0,
    log_mel,
    num_frames,
    require_same_features,
)
from flowgen.errors import ConfigError, InputError
from tests.audio.signals import noise, tone

SLANEY = FeatureConfig()  # 24 kHz, 1024/1024/256, 100 slaney bands, magnitude, centred
HTK = FeatureConfig(
    sample_rate=16000,
    n_fft=512,
    win_length=400,
    hop_length=160,
    n_mels=80,
    f_min=20.0,
    f_max=7600.0,
    mel_scale="htk",
    norm=None,
    power=2.0,
    center=False,
)


def test_defaults_and_nyquist():
    assert SLANEY.f_max == 12000.0 and SLANEY.frame_rate == pytest.approx(93.75)
    assert FeatureConfig(sample_rate=16000).f_max == 8000.0


@pytest.mark.parametrize("config", [SLANEY, HTK], ids=["slaney", "htk"])
def test_dict_round_trip(config):
    as_json = json.loads(json.dumps(config.to_dict()))
    assert FeatureConfig.from_dict(as_json) == config


def test_from_dict_is_strict():
    fields = SLANEY.to_dict()
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['hop'\]"):
        FeatureConfig.from_dict({**fields, "hop": 256})
    del fields["n_mels"]
    with pytest.raises(ConfigError, match=r"missing field\(s\) \['n_mels'\]"):
        FeatureConfig.from_dict(fields)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"hop_length": 0}, "hop_length"),
        ({"n_mels": 80.0}, "n_mels"),
        ({"win_length": 2048}, "win_length"),
        ({"f_max": 13000.0}, "f_max"),
        ({"f_min": 500.0, "f_max": 400.0}, "f_min"),
        ({"mel_scale": "mel"}, "mel_scale"),
        ({"norm": "area"}, "norm"),
        ({"power": 0.0}, "power"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"center": 1}, "center"),
    ],
)
def test_invalid_config(changes, match):
    with pytest.raises(ConfigError, match=match):
        FeatureConfig(**changes)


def test_mismatch_names_every_differing_field():
    require_same_features(SLANEY, FeatureConfig())
    other = dataclasses.replace(SLANEY, n_mels=80, hop_length=240)
    with pytest.raises(ConfigError) as info:
        require_same_features(SLANEY, other, context="vocoder 'tiny'")
    message = str(info.value)
    assert message.startswith("vocoder 'tiny': feature config mismatch")
    assert "n_mels: expected 100, got 80" in message
    assert "hop_length: expected 256, got 240" in message
    assert "n_fft" not in message


@pytest.mark.parametrize("config", [SLANEY, HTK], ids=["slaney", "htk"])
def test_log_mel_matches_librosa(config):
    librosa = pytest.importorskip("librosa")
    x = noise(12345, seed=1).reshape(1, -1).repeat(2, 1)  # (2, T)
    x[1] *= 0.01
    ours = log_mel(x, config)
    assert ours.shape == (2, config.n_mels, num_frames(12345, config))
    ref = librosa.feature.melspectrogram(
        y=x.numpy(),
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        center=config.center,
        pad_mode="reflect",
        power=config.power,
        n_mels=config.n_mels,
        fmin=config.f_min,
        fmax=config.f_max,
        htk=config.mel_scale == "htk",
        norm=config.norm,
    )
    np.testing.assert_allclose(
        ours.exp().numpy(), np.maximum(ref, config.log_floor), rtol=1e-3, atol=1e-6
    )
    np.testing.assert_allclose(ours.numpy(), np.log(np.maximum(ref, config.log_floor)), atol=1e-3)


def test_log_mel_floor_module_and_checks():
    x = torch.zeros(3, 2, 4000)
    mel = LogMel(SLANEY)(x)
    assert mel.shape == (3, 2, 100, 1 + 4000 // 256)
    torch.testing.assert_close(mel, torch.full_like(mel, float(np.log(1e-5))))
    with pytest.raises(ConfigError, match="16000 Hz .* expects 24000 Hz"):
        log_mel(torch.zeros(4000), SLANEY, sample_rate=16000)
    with pytest.raises(InputError, match="at least 513"):
        log_mel(torch.zeros(512), SLANEY)
    with pytest.raises(InputError, match="at least 512"):
        log_mel(torch.zeros(511), HTK)
    with pytest.raises(InputError, match="float tensor"):
        log_mel(torch.zeros(4000, dtype=torch.int16), SLANEY)


@pytest.mark.parametrize("config", [SLANEY, HTK], ids=["center", "no_center"])
def test_energy_aligned_and_linear(config):
    x = tone(440, config.sample_rate, 0.5)
    e = energy(x, config)
    assert e.shape == log_mel(x, config).shape[-1:]
    assert (e[2:-2] > 1).all()
    torch.testing.assert_close(energy(2 * x, config), 2 * e)
    assert energy(torch.zeros(config.sample_rate // 2), config).abs().max() == 0


@pytest.mark.parametrize("config", [SLANEY, HTK], ids=["center", "no_center"])
def test_f0_of_a_220hz_tone(config):
    pitch = f0(tone(220, config.sample_rate, 0.5), config)
    frames = num_frames(config.sample_rate // 2, config)
    assert pitch.f0.shape == pitch.voiced.shape == pitch.voiced_probability.shape == (frames,)
    inner = slice(3, -3)
    assert pitch.voiced[inner].all()
    torch.testing.assert_close(
        pitch.f0[inner], torch.full_like(pitch.f0[inner], 220.0), rtol=0.01, atol=0
    )


@pytest.mark.parametrize("config", [SLANEY, HTK], ids=["center", "no_center"])
def test_f0_frames_line_up_with_mel_frames(config):
    sr, hop = config.sample_rate, config.hop_length
    half = sr // 2
    x = torch.cat([tone(200, sr, 0.5), tone(300, sr, 0.5)])  # switch at sample `half`
    pitch = f0(x, config)
    centre = torch.arange(pitch.f0.shape[0]) * hop + (0 if config.center else config.n_fft // 2)
    margin = 2048  # pYIN's analysis window at these rates (1024 at 16 kHz)
    before = (centre < half - margin) & (centre > margin)
    after = (centre > half + margin) & (centre < x.shape[0] - margin)
    assert before.sum() > 5 and after.sum() > 5
    torch.testing.assert_close(
        pitch.f0[before], torch.full_like(pitch.f0[before], 200.0), rtol=0.01, atol=0
    )
    torch.testing.assert_close(
        pitch.f0[after], torch.full_like(pitch.f0[after], 300.0), rtol=0.01, atol=0
    )


def test_f0_unvoiced_on_silence_and_noise():
    config = HTK
    silent = f0(torch.zeros(8000), config)
    assert not silent.voiced.any() and (silent.f0 == 0).all()
    noisy = f0(noise(8000, seed=3), config)
    assert noisy.voiced.float().mean() < 0.05
    assert (noisy.f0[~noisy.voiced] == 0).all()


def test_f0_batch_and_argument_checks():
    x = torch.stack([tone(220, 16000, 0.3), torch.zeros(4800)])
    pitch = f0(x, HTK)
    assert pitch.f0.shape == (2, num_frames(4800, HTK))
    assert pitch.voiced[0, 3:-3].all() and not pitch.voiced[1].any()
    with pytest.raises(InputError, match="fmin"):
        f0(x, HTK, fmin=500.0, fmax=400.0)
    with pytest.raises(InputError, match="voicing_threshold"):
        f0(x, HTK, voicing_threshold=1.0)
