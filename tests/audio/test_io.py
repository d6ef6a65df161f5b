import os

import numpy as np
import pytest
import soundfile as sf
import torch

from flowgen.audio.io import audio_info, load_audio, resample, save_audio
from flowgen.audio.metrics import si_sdr
from flowgen.errors import AudioError, InputError
from tests.audio.signals import tone

SR = 16000


def _write_tone(path, seconds=1.0, channels=1, **kwargs):
    x = tone(440, SR, seconds).numpy()
    sf.write(path, np.stack([x] * channels, axis=1), SR, **kwargs)
    return path


def _truncate(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _missing(tmp_path):
    return tmp_path / "missing.wav"


def _directory(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    return folder


def _empty(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _text(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    return path


def _random_bytes(suffix):
    def make(tmp_path):
        path = tmp_path / f"random{suffix}"
        path.write_bytes(np.random.default_rng(0).bytes(5000))
        return path

    return make


def _truncated(suffix, fraction=0.5):
    def make(tmp_path):
        return _truncate(_write_tone(tmp_path / f"cut{suffix}"), fraction)

    return make


def _zero_length(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    return path


def _header_only(tmp_path):  # a WAV cut right after its 44-byte header
    path = _write_tone(tmp_path / "header.wav")
    path.write_bytes(path.read_bytes()[:44])
    return path


def _non_finite(value):
    def make(tmp_path):
        x = tone(440, SR, 0.5).numpy()
        x[1000] = value
        path = tmp_path / "bad_samples.wav"
        sf.write(path, x, SR, subtype="FLOAT")
        return path

    return make


BAD_FILES = {
    "missing": (_missing, "not found"),
    "directory": (_directory, "not a regular file"),
    "empty": (_empty, "empty"),
    "text": (_text, "not an audio file"),
    "random_wav": (_random_bytes(".wav"), "not an audio file"),
    "random_flac": (_random_bytes(".flac"), "not an audio file"),
    "random_mp3": (_random_bytes(".mp3"), "corrupted"),
    "truncated_wav": (_truncated(".wav"), "truncated"),
    "truncated_wav_tiny": (_truncated(".wav", 0.02), "truncated"),
    "header_only_wav": (_header_only, "truncated"),
    "truncated_flac": (_truncated(".flac"), "truncated or corrupted"),
    "truncated_ogg": (_truncated(".ogg"), "truncated or corrupted"),
    "truncated_mp3": (_truncated(".mp3"), "truncated"),
    "zero_length": (_zero_length, "zero length"),
    "nan": (_non_finite(np.nan), "NaN/Inf"),
    "inf": (_non_finite(np.inf), "NaN/Inf"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_audio_error_naming_file_and_problem(tmp_path, case):
    make, problem = BAD_FILES[case]
    path = make(tmp_path)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    message = str(info.value)
    assert path.name in message and problem in message, message


def test_too_long_is_refused_before_decoding(tmp_path):
    path = _write_tone(tmp_path / "long.flac", seconds=2.0)
    with pytest.raises(AudioError, match=r"long\.flac: is 2\.0 s long, over the 1\.5 s limit"):
        load_audio(path, max_seconds=1.5)
    assert load_audio(path, max_seconds=None).duration == pytest.approx(2.0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission")
def test_unreadable_file(tmp_path):
    path = _write_tone(tmp_path / "locked.wav")
    path.chmod(0)
    with pytest.raises(AudioError, match=r"locked\.wav: cannot be read"):
        load_audio(path)


def test_audio_info_reads_header_and_rejects_truncation(tmp_path):
    path = _write_tone(tmp_path / "a.wav", seconds=0.5, channels=2)
    info = audio_info(path)
    assert (info.sample_rate, info.num_samples, info.num_channels) == (SR, SR // 2, 2)
    assert info.format == "WAV" and info.duration == pytest.approx(0.5)
    with pytest.raises(AudioError, match="truncated"):
        audio_info(_truncate(path, 0.5))


# lossless formats hold 16-bit PCM; lossy ones are judged by SI-SDR (away from the edges)
FORMATS = {".wav": 80.0, ".flac": 80.0, ".ogg": 25.0, ".mp3": 30.0}


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_save_load_round_trip(tmp_path, suffix):
    x = torch.stack([tone(440, SR, 1.0), tone(660, SR, 1.0, amplitude=0.3)])  # (2, T)
    path = save_audio(tmp_path / "sub" / f"x{suffix}", x, SR)
    audio = load_audio(path, mono=False)
    assert audio.sample_rate == SR and audio.waveform.dtype == torch.float32
    assert audio.waveform.shape == x.shape
    inner = slice(2000, -2000)
    assert (si_sdr(audio.waveform[:, inner], x[:, inner]) > FORMATS[suffix]).all()
    mono = load_audio(path)
    assert mono.num_channels == 1
    torch.testing.assert_close(mono.waveform, audio.waveform.mean(0, keepdim=True))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_save_accepts_1d_numpy_and_float_subtype(tmp_path):
    x = 2.0 * tone(100, SR, 0.25).numpy()  # beyond full scale: fine as float
    path = save_audio(tmp_path / "loud.wav", x, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path).waveform[0].numpy(), x)


@pytest.mark.parametrize(
    ("name", "waveform", "kwargs", "match"),
    [
        ("x.aiff", tone(440, SR, 0.1), {}, "suffix"),
        ("x.wav", tone(440, SR, 0.1), {"subtype": "VORBIS"}, "subtype"),
        ("x.wav", tone(440, SR, 0.1)[:, None], {}, r"\(C, T\)"),
        ("x.wav", torch.full((100,), float("nan")), {}, "NaN"),
        ("x.wav", torch.zeros(1, 0), {}, "no samples"),
        ("x.flac", 3.0 * tone(440, SR, 0.1), {}, "clip"),
        ("x.wav", torch.zeros(2, 3, 100), {}, "shape"),
    ],
)
def test_save_rejects_bad_input(tmp_path, name, waveform, kwargs, match):
    with pytest.raises(InputError, match=match):
        save_audio(tmp_path / name, waveform, SR, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path):
    path = save_audio(tmp_path / "x.mp3", tone(440, SR, 0.5), SR)
    before = path.read_bytes()
    with pytest.raises(AudioError, match=r"x\.mp3: libsndfile cannot write MP3"):
        save_audio(path, tone(440, 96000, 0.5), 96000)  # MPEG has no 96 kHz
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp3"]


def test_resample_matches_librosa_soxr_hq():
    librosa = pytest.importorskip("librosa")
    g = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    x = sum(np.sin(2 * np.pi * f * t + g.uniform(0, 6)) for f in g.uniform(50, 6000, 8)) / 8
    ours = resample(torch.from_numpy(x), 44100, 16000).numpy()
    ref = librosa.resample(x, orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    assert ours.shape == ref.shape == (16000,)
    np.testing.assert_allclose(ours[200:-200], ref[200:-200], atol=1e-4)


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (16000, 24000), (48000, 22050)])
def test_resampled_sinusoid_keeps_its_frequency(orig, new):
    out = resample(tone(1000, orig, 1.0).double(), orig, new)
    expected = tone(1000, new, 1.0).double()
    assert out.shape == expected.shape
    torch.testing.assert_close(out[500:-500], expected[500:-500], atol=2e-4, rtol=0)
    fast = resample(tone(1000, orig, 1.0).double(), orig, new, quality="fast")
    torch.testing.assert_close(fast[500:-500], expected[500:-500], atol=5e-3, rtol=0)


def test_resample_batch_and_identity():
    x = torch.randn(2, 3, 1000)
    assert resample(x, 8000, 16000).shape == (2, 3, 2000)
    assert resample(x, 8000, 8000) is x
    with pytest.raises(InputError, match="sample_rate"):
        resample(x, 8000, 0)
    with pytest.raises(InputError, match="quality"):
        resample(x, 8000, 16000, quality="high")


def test_load_resamples_and_normalises(tmp_path):
    pytest.importorskip("pyloudnorm")
    from flowgen.audio.loudness import integrated_loudness

    path = _write_tone(tmp_path / "t.wav", seconds=1.0, channels=2)
    audio = load_audio(path, sample_rate=24000, normalize=-20.0)
    assert audio.sample_rate == 24000 and audio.waveform.shape == (1, 24000)
    assert integrated_loudness(audio.waveform, 24000) == pytest.approx(-20.0, abs=0.05)


def test_load_normalise_refuses_silence(tmp_path):
    pytest.importorskip("pyloudnorm")
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match=r"silence\.wav: cannot normalise loudness: .*silent"):
        load_audio(path, normalize=-23.0)
    assert load_audio(path).waveform.abs().max() == 0  # loading without normalising is fine


def test_load_rejects_bad_arguments(tmp_path):
    path = _write_tone(tmp_path / "t.wav")
    with pytest.raises(InputError, match="sample_rate"):
        load_audio(path, sample_rate=-1)
    with pytest.raises(InputError, match="max_seconds"):
        load_audio(path, max_seconds=0)
