"""`python -m api`: serve the API on HERALD_API_HOST:HERALD_API_PORT."""

from __future__ import annotations

import sys

import uvicorn

from api.main import MissingApiKeys, create_app
from common.logs import configure_logging
from common.runtime import exit_skipping_teardown, freeze_startup_heap
from common.settings import StartupRefused, get_settings


def main() -> int:
    configure_logging()
    settings = get_settings()
    try:
        # The API signs nothing itself, but it fronts workers that must share one secret: a
        # deployment without it is refused here too, at once, rather than at the first webhook.
        # The payload key it needs itself: it writes and reads every job's payloads.
        settings.require_secrets()
        app = create_app(settings)
    except (MissingApiKeys, StartupRefused) as exc:
        print(f"herald api: refusing to start: {exc}", file=sys.stderr)
        return 2
    if settings.dev_mode:
        key = next(iter(settings.client_keys()))
        print(f"herald api: dev mode; client key {key!r}, admin token {settings.admin_token!r}")
    freeze_startup_heap()
    # log_config=None: uvicorn's own lines go through Herald's JSON logging too (common/logs.py).
    # Open SSE streams would otherwise hold a SIGTERM'd API up until its supervisor kills it.
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    exit_skipping_teardown(main())
