"""What the launcher takes from the environment, and the HERALD_* settings it hands down.

The launcher writes its decisions into its own environment, so the children (which
inherit it) and the launcher read the same `common.settings.Settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.settings import Settings, load_or_create_secret
from devstack.temporal_server import HOST, port_of

DEFAULT_SMS_SINK_PORT = 8026
DEV_WEBHOOK_ALLOW_HOSTS = "127.0.0.1/8,::1/128,localhost"


@dataclass(frozen=True)
class DevStack:
    settings: Settings
    data_dir: Path
    temporal_port: int
    smtp_sink_port: int | None  # None: HERALD_SMTP_HOST points at a real server
    sms_sink_port: int | None  # None: HERALD_SMS_GATEWAY_URL points at a real gateway

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def sms_dir(self) -> Path:
        return self.data_dir / "sms"


def prepare() -> DevStack:
    """Settle the dev defaults in os.environ and return what to start."""
    environ = os.environ
    environ.setdefault("HERALD_DEV_MODE", "true")
    settings = Settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    environ["HERALD_DATA_DIR"] = str(data_dir)

    temporal_port = port_of(settings.temporal_address)
    environ.setdefault("HERALD_TEMPORAL_ADDRESS", f"{HOST}:{temporal_port}")

    smtp_sink_port = None
    if not environ.get("HERALD_SMTP_HOST"):
        smtp_sink_port = settings.smtp_port
        environ["HERALD_SMTP_HOST"] = HOST
        environ["HERALD_SMTP_PORT"] = str(smtp_sink_port)

    sms_sink_port = None
    if not environ.get("HERALD_SMS_GATEWAY_URL"):
        sms_sink_port = int(environ.get("HERALD_DEV_SMS_PORT") or DEFAULT_SMS_SINK_PORT)
        environ["HERALD_SMS_GATEWAY_URL"] = f"http://{HOST}:{sms_sink_port}/messages"

    # Dev mode only: outside it the worker and the API refuse to start without a shared secret.
    if settings.dev_mode and not environ.get("HERALD_WEBHOOK_SECRET"):
        environ["HERALD_WEBHOOK_SECRET"] = load_or_create_secret(data_dir / "webhook_secret")
    # The same for the payload key, so the API and the worker surely read and write with one key.
    if settings.dev_mode and not environ.get("HERALD_ENCRYPTION_KEY"):
        environ["HERALD_ENCRYPTION_KEY"] = load_or_create_secret(data_dir / "encryption_key", prefix="")
    if settings.dev_mode and not environ.get("HERALD_WEBHOOK_ALLOW_HOSTS"):
        environ["HERALD_WEBHOOK_ALLOW_HOSTS"] = DEV_WEBHOOK_ALLOW_HOSTS

    return DevStack(Settings(), data_dir, temporal_port, smtp_sink_port, sms_sink_port)
