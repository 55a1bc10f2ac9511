"""The one way Herald connects to Temporal: address, namespace, TLS and data converter.

The API, the worker, the benchmark and the tests all connect through here, so the payload
converter (and the encryption codec that goes with it) is the same on every side.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import temporalio.converter
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.service import RetryConfig, TLSConfig

from common.settings import Settings

log = logging.getLogger("herald.temporal")


def data_converter(settings: Settings) -> DataConverter:
    """How Herald's payloads are written into Temporal (workflow inputs, results, memo, details)."""
    return temporalio.converter.default()


def tls_config(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls:
        return False

    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path else None

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca_file),
        client_cert=read(settings.temporal_tls_cert_file),
        client_private_key=read(settings.temporal_tls_key_file),
        domain=settings.temporal_tls_server_name,
    )


async def connect(settings: Settings, *, retry_config: RetryConfig | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        data_converter=data_converter(settings),
        retry_config=retry_config,
    )


async def connect_when_up(settings: Settings, attempts: int = 60) -> Client:
    """Connect, waiting for Temporal: a worker may start before the server is up."""
    for n in range(1, attempts + 1):
        try:
            return await connect(settings)
        except RuntimeError as exc:
            if n == attempts:
                raise
            log.warning("Temporal at %s not reachable yet (%s); retrying", settings.temporal_address, exc)
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


def client_for(client: Client, settings: Settings) -> Client:
    """A client on an existing connection (a test environment's) with Herald's data converter."""
    return Client(client.service_client, namespace=client.namespace, data_converter=data_converter(settings))
