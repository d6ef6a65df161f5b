from pathlib import Path

import pytest
import torch

from flowgen.audio.io import load_audio
from flowgen.audio.metrics_models import normalize_transcript, word_error_rate
from flowgen.errors import InputError

DATA = Path(__file__).parent / "data"
FOX = "The quick brown fox jumps over the lazy dog."
SHELLS = "She sells seashells by the seashore."


def test_word_error_rate_counts_edits():
    assert word_error_rate("the cat sat", "The cat sat.") == 0.0
    assert word_error_rate("the cat sat down", "the cat sat") == pytest.approx(1 / 3)  # insertion
    assert word_error_rate("the sat", "the cat sat") == pytest.approx(1 / 3)  # deletion
    assert word_error_rate("a dog sat", "the cat sat") == pytest.approx(2 / 3)  # substitutions
    assert word_error_rate("", "the cat sat") == 1.0
    assert word_error_rate("x y z w v u", "the cat") == 3.0  # can exceed 1
    with pytest.raises(InputError, match="no words"):
        word_error_rate("anything", " ... ")


def test_normalize_transcript():
    assert normalize_transcript("Don't STOP -- 'now', 42!") == ["don't", "stop", "now", "42"]


def test_pocketsphinx_transcribes_festival_speech():
    pytest.importorskip("pocketsphinx")
    from flowgen.audio.metrics_models import transcribe, wer

    fox = load_audio(DATA / "kal_fox.flac")
    assert transcribe(fox.waveform, fox.sample_rate).startswith("the quick brown fox")
    assert wer(fox.waveform, fox.sample_rate, FOX) <= 0.2  # "jumped" for "jumps" here
    shells = load_audio(DATA / "slt_shells.flac", sample_rate=24000)  # resampled back to 16 kHz
    assert wer(shells.waveform, shells.sample_rate, SHELLS) <= 0.2


def test_speaker_similarity_separates_voices():
    pytest.importorskip("resemblyzer")
    from flowgen.audio.metrics_models import speaker_embedding, speaker_similarity

    kal_fox = load_audio(DATA / "kal_fox.flac").waveform
    kal_shells = load_audio(DATA / "kal_shells.flac").waveform
    slt_shells = load_audio(DATA / "slt_shells.flac").waveform
    embedding = speaker_embedding(kal_fox, 16000)
    assert embedding.shape == (256,) and float(embedding.norm()) == pytest.approx(1.0, abs=1e-4)
    assert speaker_similarity(kal_fox, kal_fox, 16000) == pytest.approx(1.0, abs=1e-4)
    same = speaker_similarity(kal_fox, kal_shells, 16000)  # same voice, different text
    other = speaker_similarity(kal_shells, slt_shells, 16000)  # same text, different voice
    assert same > 0.75 and other < 0.6 and same - other > 0.25


def test_model_metric_input_checks():
    from flowgen.audio.metrics_models import _mono_16k

    with pytest.raises(InputError, match="mono"):
        _mono_16k(torch.zeros(2, 100), 16000)
    with pytest.raises(InputError, match="NaN"):
        _mono_16k(torch.full((100,), float("nan")), 16000)
