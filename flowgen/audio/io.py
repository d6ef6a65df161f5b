"""Audio files in and out: WAV, FLAC, OGG (Vorbis) and MP3 through soundfile/libsndfile.

Every way a file can be unusable -- missing, empty, not audio, truncated, corrupted, zero length,
NaN/Inf samples, longer than a limit -- raises one :class:`~flowgen.errors.AudioError` whose
message starts with the file name and says what is wrong. Waveforms are ``(C, T)`` float32
tensors at full scale [-1, 1]. Writes are atomic (temporary sibling file, then rename).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from flowgen.audio.loudness import normalize_loudness
from flowgen.checkpoint import atomic_file
from flowgen.errors import AudioError, InputError

# suffix -> libsndfile major format; reading accepts anything libsndfile knows
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
DEFAULT_MAX_SECONDS = 600.0
_MP3_FRAME = 1152  # samples per MPEG-1 Layer III frame: frame counts of MP3 files are estimates
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}

# Kaiser-windowed sinc with the parameters of resampy's "kaiser_best" (torchaudio resampling
# tutorial); within ~4e-5 of soxr's HQ resampler, where torchaudio's defaults are ~2e-3 off.
_RESAMPLE_BEST = dict(
    lowpass_filter_width=64,
    rolloff=0.9475937167399596,
    resampling_method="sinc_interp_kaiser",
    beta=14.769656459379492,
)


@dataclasses.dataclass(frozen=True, eq=False)
class Audio:
    """A decoded signal: ``waveform`` is ``(C, T)`` float32, ``sample_rate`` in Hz."""

    waveform: torch.Tensor
    sample_rate: int

    @property
    def num_channels(self) -> int:
        return self.waveform.shape[0]

    @property
    def num_samples(self) -> int:
        return self.waveform.shape[-1]

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, without decoding it."""

    sample_rate: int
    num_samples: int
    num_channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header (rate, length, channels, format) and check it is usable audio.

    Raises:
        AudioError: If the file is missing, empty, not audio, or truncated (WAV) / malformed.
    """
    path = _check_path(path)
    with _open(path) as f:
        info = AudioInfo(f.samplerate, f.frames, f.channels, f.format, f.subtype)
    if info.format == "WAV":
        _check_wav_length(path)
    return info


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    mono: bool = True,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    normalize: float | None = None,
) -> Audio:
    """Decode an audio file into a ``(C, T)`` float32 tensor.

    Args:
        path: Any format libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...).
        sample_rate: Resample to this rate (see :func:`resample`); ``None`` keeps the file's.
        mono: Average the channels into one (``C == 1``); ``False`` keeps the file's channels.
        max_seconds: Refuse files longer than this (default 600 s; checked from the header,
            before decoding); ``None`` for no limit.
        normalize: Target integrated loudness in LUFS (ITU-R BS.1770-4, e.g. -23.0 for EBU
            R 128), applied after resampling and downmixing; ``None`` leaves the level alone.

    Returns:
        The decoded :class:`Audio`.

    Raises:
        AudioError: Naming the file and the problem: not found / unreadable, empty (0 bytes),
            not an audio file, truncated or corrupted, zero length, longer than
            ``max_seconds``, NaN/Inf samples, or silent/too short to normalise.
        InputError: If an argument is invalid (e.g. a non-positive sample rate).
    """
    if sample_rate is not None:
        _check_rate(sample_rate, "sample_rate")
    if max_seconds is not None and not max_seconds > 0:
        raise InputError(f"max_seconds must be positive or None, got {max_seconds}")
    path = _check_path(path)
    with _open(path) as f:
        declared, rate = f.frames, f.samplerate
        if f.format == "WAV":
            _check_wav_length(path)
        if declared == 0:
            raise AudioError(f"{path}: contains no samples (zero length)")
        if max_seconds is not None and declared / rate > max_seconds:
            raise AudioError(
                f"{path}: is {declared / rate:.1f} s long, over the {max_seconds:g} s limit "
                "(pass a larger max_seconds, or None for no limit)"
            )
        try:
            data = f.read(dtype="float32", always_2d=True)  # (T, C)
        except sf.LibsndfileError as err:
            raise AudioError(
                f"{path}: is truncated or corrupted (libsndfile: {_reason(err)})"
            ) from err
        is_mp3 = f.format == "MP3"
    missing = declared - data.shape[0]
    if missing > 0 and (not is_mp3 or missing > max(2 * _MP3_FRAME, 0.01 * declared)):
        raise AudioError(
            f"{path}: is truncated (header promises {declared} samples, only {data.shape[0]} "
            "could be decoded)"
        )
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples (zero length)")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        raise AudioError(
            f"{path}: contains {int(bad.sum())} NaN/Inf sample(s), the first at "
            f"{first / rate:.3f} s"
        )
    waveform = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, T)
    if mono and waveform.shape[0] > 1:
        waveform = waveform.mean(dim=0, keepdim=True)
    if sample_rate is not None and sample_rate != rate:
        waveform = resample(waveform, rate, sample_rate)
        rate = sample_rate
    if normalize is not None:
        try:
            waveform = normalize_loudness(waveform, rate, normalize)
        except InputError as err:
            raise AudioError(f"{path}: cannot normalise loudness: {err}") from err
    return Audio(waveform.contiguous(), rate)


def save_audio(
    path: str | os.PathLike,
    waveform: torch.Tensor | np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Atomically write a waveform; the format follows the suffix (.wav, .flac, .ogg, .mp3).

    Args:
        path: Destination; parent folders are created.
        waveform: ``(C, T)`` or ``(T,)`` float signal at full scale [-1, 1].
        sample_rate: Sampling rate in Hz (MP3 allows 8-48 kHz MPEG rates only).
        subtype: libsndfile subtype (e.g. ``"PCM_24"``, ``"FLOAT"``); default: the format's
            default (16-bit PCM for WAV/FLAC, Vorbis for OGG, Layer III for MP3).

    Returns:
        The written path.

    Raises:
        InputError: For an unknown suffix or subtype, a wrongly shaped, empty or non-finite
            waveform, or samples beyond [-1, 1] that a non-float subtype would clip.
        AudioError: If libsndfile refuses the combination (e.g. an MP3 at 96 kHz).
    """
    path = Path(path)
    _check_rate(sample_rate, "sample_rate")
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"use one of {sorted(WRITE_FORMATS)}"
        )
    subtype = subtype or sf.default_subtype(fmt)
    if not sf.check_format(fmt, subtype):
        raise InputError(
            f"{path}: subtype {subtype!r} is not valid for {fmt}; "
            f"valid: {sorted(sf.available_subtypes(fmt))}"
        )
    data = _as_numpy_channels_first(waveform)
    if subtype not in _FLOAT_SUBTYPES and np.abs(data).max() > 1.0:
        raise InputError(
            f"{path}: peak {np.abs(data).max():.3f} exceeds full scale and {fmt}/{subtype} "
            "would clip it; scale the signal down or save as WAV with subtype='FLOAT'"
        )
    try:
        with atomic_file(path) as tmp:
            sf.write(str(tmp), data.T, sample_rate, format=fmt, subtype=subtype)
    except sf.LibsndfileError as err:
        raise AudioError(
            f"{path}: libsndfile cannot write {fmt}/{subtype} at {sample_rate} Hz with "
            f"{data.shape[0]} channel(s) ({_reason(err)})"
        ) from err
    return path


def resample(
    waveform: torch.Tensor,
    orig_sample_rate: int,
    sample_rate: int,
    *,
    quality: Literal["best", "fast"] = "best",
) -> torch.Tensor:
    """Band-limited sinc resampling along the last axis (torchaudio.functional.resample).

    Args:
        waveform: ``(..., T)`` float tensor.
        orig_sample_rate: Its rate in Hz.
        sample_rate: The rate wanted, in Hz.
        quality: ``"best"``: Kaiser window, 64 zero crossings, rolloff 0.9476 (resampy's
            kaiser_best); ``"fast"``: torchaudio's defaults (Hann, 6 zero crossings, rolloff
            0.99), a few times faster and ~2e-3 less accurate.

    Returns:
        ``(..., ceil(T * sample_rate / orig_sample_rate))`` tensor.
    """
    import torchaudio.functional as AF

    _check_rate(orig_sample_rate, "orig_sample_rate")
    _check_rate(sample_rate, "sample_rate")
    if quality not in ("best", "fast"):
        raise InputError(f"quality must be 'best' or 'fast', got {quality!r}")
    if orig_sample_rate == sample_rate:
        return waveform
    kwargs = _RESAMPLE_BEST if quality == "best" else {}
    return AF.resample(waveform, orig_sample_rate, sample_rate, **kwargs)


def _check_rate(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{name} must be a positive integer (Hz), got {value!r}")


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: is not a regular file")
    try:
        with open(path, "rb") as fh:
            empty = fh.read(1) == b""
    except OSError as err:
        raise AudioError(f"{path}: cannot be read ({err.strerror})") from err
    if empty:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    return path


@contextmanager
def _open(path: Path) -> Iterator[sf.SoundFile]:
    """``sf.SoundFile`` whose open errors become AudioError naming the file."""
    try:
        file = sf.SoundFile(path)
    except sf.LibsndfileError as err:
        reason = _reason(err)
        if "not recognised" in reason.lower():
            raise AudioError(f"{path}: is not an audio file (libsndfile: {reason})") from err
        raise AudioError(f"{path}: is truncated or corrupted (libsndfile: {reason})") from err
    with file:
        yield file


def _reason(err: sf.LibsndfileError) -> str:
    return (err.error_string or str(err)).strip()


def _check_wav_length(path: Path) -> None:
    """libsndfile silently shortens a WAV whose data chunk is cut off: compare with the header."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64/RIFX/other containers: leave to libsndfile
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                # 0 and 0xFFFFFFFF are what streaming writers leave when the length is unknown
                if chunk_size not in (0, 0xFFFFFFFF) and available < chunk_size:
                    raise AudioError(
                        f"{path}: is truncated (the WAV header promises {chunk_size} data "
                        f"bytes, the file holds {available})"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def _as_numpy_channels_first(waveform: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(waveform, torch.Tensor):
        data = waveform.detach().to("cpu", torch.float32).numpy()
    elif isinstance(waveform, np.ndarray):
        data = waveform.astype(np.float32, copy=False)
    else:
        raise InputError(f"waveform must be a tensor or array, got {type(waveform).__name__}")
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise InputError(f"waveform must be (C, T) or (T,), got shape {data.shape}")
    channels, samples = data.shape
    if samples == 0:
        raise InputError("waveform has no samples")
    if channels > samples:
        raise InputError(
            f"waveform has shape {data.shape}: more channels than samples; pass (C, T), not (T, C)"
        )
    if not np.isfinite(data).all():
        raise InputError("waveform contains NaN or Inf samples")
    return data
