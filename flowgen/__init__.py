"""flowgen: flow-matching generative models for audio and images."""

__version__ = "0.1.0"
