"""Model-based speech metrics whose models ship inside their packages (no downloads).

* Word error rate through PocketSphinx 5 (Huggins-Daines et al., ICASSP 2006) with the US
  English acoustic model, dictionary and language model bundled in the ``pocketsphinx`` wheel.
  Expect ~10-20 % WER on clean natural-sounding speech and far worse on robotic voices: use it
  to compare systems on the same texts, not as an absolute intelligibility score.
* Speaker similarity through Resemblyzer's GE2E speaker encoder (Wan et al., "Generalized
  End-to-End Loss for Speaker Verification", ICASSP 2018), weights bundled in ``resemblyzer``:
  the cosine of two 256-d utterance embeddings.

Both packages are optional and imported on first use; the loaded models are cached per process.
Install: ``pip install 'flowgen[audio-models]'`` and then ``pip install --no-deps resemblyzer``
(resemblyzer requires ``webrtcvad``, whose sdist needs ``pkg_resources``, gone from recent
setuptools; the extra installs the drop-in ``webrtcvad-wheels`` instead).
"""

from __future__ import annotations

import functools
import re

import numpy as np
import torch

from flowgen.audio.io import resample
from flowgen.errors import InputError

ASR_SAMPLE_RATE = 16000  # both models work on 16 kHz audio


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words with punctuation removed (apostrophes inside words kept)."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    return [w.strip("'") for w in text.split() if w.strip("'")]


def word_error_rate(hypothesis: str, reference: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after normalisation.

    Levenshtein alignment over words of :func:`normalize_transcript`; can exceed 1 when the
    hypothesis has many insertions.

    Raises:
        InputError: If the reference has no words.
    """
    hyp, ref = normalize_transcript(hypothesis), normalize_transcript(reference)
    if not ref:
        raise InputError("reference transcript has no words; WER is undefined")
    previous = list(range(len(hyp) + 1))  # edit distances for the empty reference prefix
    for i, word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, guess in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (word != guess),  # substitution or match
            )
        previous = current
    return previous[-1] / len(ref)


def transcribe(waveform: torch.Tensor, sample_rate: int) -> str:
    """Recognise English speech with PocketSphinx; returns lower-case words ("" if none).

    Args:
        waveform: ``(T,)`` or ``(1, T)`` mono speech at full scale; resampled to 16 kHz.
        sample_rate: Its rate in Hz.
    """
    pcm = _pcm16(_mono_16k(waveform, sample_rate))
    decoder = _decoder()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return "" if hypothesis is None else hypothesis.hypstr


def wer(waveform: torch.Tensor, sample_rate: int, reference: str) -> float:
    """Word error rate of PocketSphinx's transcript of ``waveform`` against ``reference``."""
    return word_error_rate(transcribe(waveform, sample_rate), reference)


def speaker_embedding(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(256,)`` unit-norm GE2E embedding of one utterance (Resemblyzer).

    Follows Resemblyzer's preprocessing: 16 kHz, volume normalised to -30 dBFS (raise only),
    long silences trimmed by WebRTC VAD; then the mean of partial-utterance embeddings.

    Raises:
        InputError: If nothing is left after silence trimming.
    """
    from resemblyzer import preprocess_wav

    wav = preprocess_wav(_mono_16k(waveform, sample_rate).numpy().astype(np.float32))
    if wav.size == 0:
        raise InputError("no speech left after silence trimming; cannot embed the speaker")
    embedding = _voice_encoder().embed_utterance(wav)
    return torch.from_numpy(np.asarray(embedding, dtype=np.float32))


def speaker_similarity(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    *,
    reference_sample_rate: int | None = None,
) -> float:
    """Cosine similarity in [-1, 1] of the speaker embeddings of two utterances.

    Args:
        estimate: ``(T,)`` or ``(1, T)`` generated/converted speech.
        reference: ``(T',)`` or ``(1, T')`` speech of the target speaker (any length/text).
        sample_rate: Rate of ``estimate`` in Hz.
        reference_sample_rate: Rate of ``reference``; default ``sample_rate``.
    """
    a = speaker_embedding(estimate, sample_rate)
    b = speaker_embedding(reference, reference_sample_rate or sample_rate)
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


@functools.lru_cache(maxsize=1)
def _decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("WER needs pocketsphinx: pip install 'flowgen[audio-models]'") from err
    return Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")


@functools.lru_cache(maxsize=1)
def _voice_encoder():
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "speaker similarity needs resemblyzer: pip install 'flowgen[audio-models]' && "
            "pip install --no-deps resemblyzer"
        ) from err
    return VoiceEncoder("cpu", verbose=False)


def _mono_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
        raise InputError("waveform must be a float tensor (T,) or (1, T)")
    if waveform.ndim == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.ndim != 1 or waveform.shape[0] == 0:
        raise InputError(f"expected one mono signal (T,) or (1, T), got {tuple(waveform.shape)}")
    if not torch.isfinite(waveform).all():
        raise InputError("waveform contains NaN or Inf samples")
    return resample(waveform.detach().cpu().float(), sample_rate, ASR_SAMPLE_RATE)


def _pcm16(waveform: torch.Tensor) -> bytes:
    pcm = (waveform.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16)
    return pcm.numpy().tobytes()
