"""One structured JSON line per job stage (added, picked, attempt failed, completed, failed)."""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger("herald")


def log_event(event: str, *, log: logging.Logger | logging.LoggerAdapter = logger, **fields: Any) -> None:
    log.info(json.dumps({"event": event, **fields}, default=str, separators=(",", ":")))


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
