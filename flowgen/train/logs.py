"""Run logs: a CSV file of ``step,name,value`` rows, optionally mirrored to TensorBoard.

The long format takes any metric at any step (``train/loss`` every ``log_every`` steps,
``eval/*`` when evaluating) without a fixed header; values are written with ``repr`` so they
read back exactly. On resume the rows after the resumed step are dropped, so an interrupted and
resumed run ends with the same log as an uninterrupted one. Only the main process writes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from flowgen.checkpoint import atomic_file

LOG_NAME = "log.csv"
HEADER = ("step", "name", "value")


class RunLog:
    def __init__(
        self, output_dir: Path, *, resume_step: int | None, tensorboard: bool, enabled: bool = True
    ):
        self.path = Path(output_dir) / LOG_NAME
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if resume_step is not None and self.path.exists():
            try:
                rows = read_log(self.path)
            except (ValueError, csv.Error) as err:
                from flowgen.errors import CheckpointError

                raise CheckpointError(
                    f"{self.path} is corrupted ({err}); delete it to resume"
                ) from err
        rows = [r for r in rows if r[0] <= (resume_step or 0)]
        with atomic_file(self.path) as tmp, open(tmp, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(HEADER)
            out.writerows((s, n, repr(v)) for s, n, v in rows)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                from flowgen.errors import ConfigError

                raise ConfigError(
                    "train.tensorboard: true needs the tensorboard package "
                    "(pip install tensorboard), or set it to false"
                ) from err
            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=purge)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled or not values:
            return
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerows((step, name, repr(float(v))) for name, v in values.items())
        if self.writer is not None:
            for name, v in values.items():
                self.writer.add_scalar(name, float(v), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_log(path: str | Path) -> list[tuple[int, str, float]]:
    """The ``(step, name, value)`` rows of a log.csv."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        return [(int(s), n, float(v)) for s, n, v in reader]


def metric(path: str | Path, name: str) -> list[tuple[int, float]]:
    """``(step, value)`` pairs of one metric, e.g. ``metric(log, "train/loss")``."""
    return [(s, v) for s, n, v in read_log(path) if n == name]
