"""Capturing what a test process logs, the way Herald's processes write it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def on_the_root_logger(handler: logging.Handler, level: int = logging.INFO) -> Iterator[logging.Handler]:
    """`handler` receives every record at `level` and above meanwhile; the root logger is restored after."""
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
