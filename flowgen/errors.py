"""Typed errors for user mistakes: the CLI prints them as one line, never a traceback."""

from __future__ import annotations


class FlowgenError(Exception):
    """Base class for errors caused by user input or user files."""


class InputError(FlowgenError, ValueError):
    """An argument has the wrong shape, range or type."""


class CheckpointError(FlowgenError):
    """A checkpoint folder is missing, truncated, corrupted or of the wrong kind."""


class ConfigError(FlowgenError):
    """A recipe or model config is malformed."""


class IntegrationError(FlowgenError, FloatingPointError):
    """An ODE integration produced non-finite values."""


class AudioError(FlowgenError):
    """An audio file or signal is unusable (empty, truncated, not audio, non-finite, too long)."""


class DataError(FlowgenError):
    """A dataset folder, manifest or data file is missing or malformed."""
