"""Logging, set up once per process: the main process reports at INFO, the other processes only warnings.

Every module logs through ``get_logger(__name__)``, under the package logger ``evoxtral``. The first call gives that
logger one handler on standard output, the stream a person running a recipe reads (transformers and datasets give
their library loggers a default handler the same way), and a level from the process's rank: under
``accelerate launch`` every process runs the same code, so a line logged at INFO everywhere would appear once per
GPU. Entry points that train call ``setup_logging(training_args)`` once more, which also brings transformers' and
datasets' own loggers to the levels the TrainingArguments give this process (``log_level``, ``log_level_replica``).
"""

from __future__ import annotations

import logging
import os
import sys

PACKAGE_LOGGER = "evoxtral"

_configured = False


class _StandardOutputHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stdout`` is when a record is emitted (a redirected console, the
    output a test captures), not to the stream that was current when the handler was made."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # StreamHandler assigns it; the current sys.stdout is always used instead
        pass


class _ConsoleFormatter(logging.Formatter):
    """INFO lines as plain messages (they are the command's progress and summaries); warnings and errors with their
    level and logger; in a multi-process run, every line with the rank that wrote it."""

    def __init__(self, rank: int | None):
        super().__init__("%(message)s")
        self.rank = rank

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname} {record.name}: {message}"
        return message if self.rank is None else f"[rank {self.rank}] {message}"


def process_rank() -> tuple[int, int]:
    """(rank, number of processes) of this process, from the variables torchrun and accelerate launch set."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    return rank, int(os.environ.get("WORLD_SIZE", "1"))


def setup_logging(training_args=None) -> None:
    """Give the package logger its handler (once) and this process's level; with a run's TrainingArguments, also
    set transformers' and datasets' verbosity to the level those arguments give this process."""
    global _configured
    rank, world_size = process_rank()
    package = logging.getLogger(PACKAGE_LOGGER)
    handler = next((h for h in package.handlers if isinstance(h, _StandardOutputHandler)), None)
    if handler is None:
        handler = _StandardOutputHandler()
        package.addHandler(handler)
    handler.setFormatter(_ConsoleFormatter(rank if world_size > 1 else None))
    package.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    _configured = True
    if training_args is not None:
        import datasets
        import transformers

        level = training_args.get_process_log_level()
        transformers.utils.logging.set_verbosity(level)
        datasets.utils.logging.set_verbosity(level)


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name``, the package logger set up for this process on first use."""
    if not _configured:
        setup_logging()
    return logging.getLogger(name)
