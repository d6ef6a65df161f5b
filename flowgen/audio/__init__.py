"""Audio front end: file I/O, loudness, features (log-mel, F0, energy) and metrics."""
