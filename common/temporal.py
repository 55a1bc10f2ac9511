"""The one way Herald connects to Temporal: address, namespace, TLS, data converter, and the
worker's runtime (its metrics endpoint and the SDK's logs).

The API, the worker, the benchmark and the tests all connect through here, so the payload
converter (and the encryption codec that goes with it) is the same on every side.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.failure.v1 import Failure
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadConverter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RetryConfig, RPCError, TLSConfig
from temporalio.worker import UnsandboxedWorkflowRunner

from common.codec import EncryptionCodec
from common.failures import ConciseError
from common.models import SEARCH_ATTRIBUTES
from common.payloads import PayloadConverter as HeraldPayloadConverter
from common.settings import Settings

# How long one call to Temporal may take (the API's and the worker's own calls, not a job's wait).
RPC_TIMEOUT = timedelta(seconds=10)

log = logging.getLogger("herald.temporal")

# How every Herald worker (worker.py, and the API's intake worker) runs workflows: outside the SDK's
# sandbox. With Herald's modules passed through it (imported once per worker, not per run: about 40%
# less worker CPU per job) the sandbox no longer checked Herald's code for non-deterministic calls
# and cost a quarter of the worker's CPU per job still (an exec per activation and per payload,
# bench/README.md). The checks are made where they cost no job anything: tests/replay/test_determinism.py
# reads the source, and the replay tests run every recorded history in the SDK's full sandbox.
WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()


class FailureConverter(DefaultFailureConverterWithEncodedAttributes):
    """The SDK's failures with their message and stack trace encrypted, except that a ConciseError
    goes without its stack trace and cause (common/failures.py)."""

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        if isinstance(exception, ConciseError):
            # Its twin, never raised: no traceback, no cause, no context.
            exception = ApplicationError(
                exception.message,
                *exception.details,
                type=exception.type,
                non_retryable=exception.non_retryable,
                next_retry_delay=exception.next_retry_delay,
                category=exception.category,
            )
        super().to_failure(exception, payload_converter, failure)


def data_converter(settings: Settings) -> DataConverter:
    """How Herald's payloads are written into Temporal: JSON, then encrypted (common/codec.py).

    The codec covers every payload the SDK writes: workflow and activity inputs and results,
    heartbeat details, the memo (the client's at start, the workflow's upserts), the runs'
    summaries (user metadata), schedules' actions and memos, and failures' details. Failures'
    messages and stack traces can carry message text or an address too (an SMTP server's answer,
    a receiver's body excerpt), so the failure converter moves them into the failure's encoded
    attributes, which the codec encrypts; Temporal itself shows "Encoded failure" in their place.
    Search attributes are never encoded: they hold no personal data (common/models.py).
    """
    return DataConverter(
        payload_converter_class=HeraldPayloadConverter,
        payload_codec=EncryptionCodec(settings.encryption_keys()),
        failure_converter_class=FailureConverter,
    )


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


async def connect(
    settings: Settings, *, retry_config: RetryConfig | None = None, runtime: Runtime | None = None
) -> Client:
    """A client; `runtime` (default: the SDK's default runtime) is where its workers' metrics go."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        data_converter=data_converter(settings),
        retry_config=retry_config,
        runtime=runtime,
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the search attributes Herald's runs carry (common/models.py) that the namespace lacks;
    the names added. A dev server keeps the attributes of the version that created its database (its
    `--search-attribute` flags are not applied again), so an upgrade that adds one (HeraldTenant)
    would have every start refused; on a cluster where Herald may not add them (a role without
    operator rights, Temporal Cloud) it logs what is missing: deploy/register-search-attributes.sh."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        missing = [n for n in SEARCH_ATTRIBUTES if n not in listed.custom_attributes]
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace,
                    search_attributes=dict.fromkeys(missing, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
                )
            )
            log.info("registered search attributes %s", ", ".join(missing))
            await _until_usable(client, missing)
        return missing
    except RPCError as exc:
        log.warning("could not check or register Herald's search attributes (%s): %s", exc.status.name, exc.message)
        return []


# How long a just-added search attribute may take to reach the server's cache (Herald's servers refresh it
# every few seconds rather than on every read: devstack/temporal_server.py) before starts may carry it.
ATTRIBUTES_USABLE_WITHIN_S = 30.0


async def _until_usable(client: Client, names: list[str]) -> None:
    """Until a query naming `names` is accepted: from then on, so are starts that carry them."""
    query = " AND ".join(f"{name} = ''" for name in names)  # Herald's attributes are all Keywords
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ATTRIBUTES_USABLE_WITHIN_S
    while True:
        try:
            await client.count_workflows(query)
            return
        except RPCError as exc:
            if loop.time() > deadline:
                log.warning("search attributes %s not usable after %g s: %s", names, ATTRIBUTES_USABLE_WITHIN_S, exc)
                return
            await asyncio.sleep(0.1)


async def connect_when_up(settings: Settings, attempts: int = 60, *, runtime: Runtime | None = None) -> Client:
    """Connect, waiting for Temporal: a worker may start before the server is up."""
    for n in range(1, attempts + 1):
        try:
            return await connect(settings, runtime=runtime)
        except RuntimeError as exc:
            if n == attempts:
                raise
            log.warning("Temporal at %s not reachable yet (%s); retrying", settings.temporal_address, exc)
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


def metrics_address(settings: Settings) -> str | None:
    """Where the worker serves its Prometheus metrics, `host:port`; None when the port is 0."""
    if not settings.worker_metrics_port:
        return None
    host = settings.worker_metrics_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    return f"{host}:{settings.worker_metrics_port}"


def telemetry(metrics_bind_address: str | None) -> TelemetryConfig:
    """The SDK's core logs go to the `temporalio.core` logger (so they are JSON lines like the rest,
    common/logs.py); its metrics, and Herald's worker metrics, to one Prometheus endpoint.

    Counters keep the names they are created with (no `_total` added), so Herald's are exposed
    under the names in common/metrics.py; the SDK's are `temporal_…`, durations in milliseconds,
    as Temporal's documentation names them.
    """
    return TelemetryConfig(
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        ),
        metrics=PrometheusConfig(bind_address=metrics_bind_address) if metrics_bind_address else None,
    )


def worker_runtime(settings: Settings) -> Runtime:
    """The worker's Temporal runtime, serving `/metrics` on HERALD_WORKER_METRICS_HOST:PORT.

    A port that cannot be bound (taken, not allowed) is logged as an error and the worker runs
    without the endpoint: metrics are not worth stopping the sends for.
    """
    address = metrics_address(settings)
    if address:
        try:
            runtime = Runtime(telemetry=telemetry(address))
        except ValueError as exc:  # the SDK's "Failed starting Prometheus exporter: ..."
            log.error("worker metrics not served on %s: %s", address, exc)
        else:
            log.info("worker metrics on http://%s/metrics", address)
            return runtime
    return Runtime(telemetry=telemetry(None))


def client_for(client: Client, settings: Settings) -> Client:
    """The same client (connection, namespace, interceptors: a time-skipping test environment's
    still skips time) with Herald's data converter, so it reads and writes encrypted payloads."""
    config = client.config()
    config["data_converter"] = data_converter(settings)
    return Client(**config)
