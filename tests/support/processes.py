"""Waiting on a real process (`python -m api`, `python -m worker`) started by a test."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def fetch_when_served(url: str, process: subprocess.Popen, what: str, timeout: float = 30) -> str:
    """The page at `url` once `process` serves it; fails if the process dies or never answers."""
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                assert answer.status == 200
                return answer.read().decode()
        except OSError:
            assert process.poll() is None and time.monotonic() < end, f"{what} never answered {url}"
            time.sleep(0.2)
