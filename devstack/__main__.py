"""`python -m devstack` (what `make run` starts): Herald's whole local stack in the foreground.

Temporal dev server → SMTP and SMS sinks (unless real ones are configured) → worker → API,
each waited for in turn. Once the stack is up, a process that dies is logged and started again
(after 1 s, 2 s, 4 s ... up to 30 s while it keeps dying; devstack/processes.py). Ctrl-C stops
everything in reverse order: the API, the worker (which first lets its sends in flight finish),
the sinks, Temporal. A child that dies while the stack is still coming up stops everything (a
setup to fix).
"""

from __future__ import annotations

import sys

from devstack import environment
from devstack.environment import DevStack
from devstack.processes import ChildExited, StopRequested, Supervisor, say, say_block
from devstack.readiness import NotReady, http_ok, port_open, wait_until
from devstack.temporal_server import (
    HOST,
    TASK_QUEUE_PARTITIONS,
    database_partitions,
    namespace_answers,
    server_command,
    set_retention,
)

PYTHON = sys.executable
TEMPORAL_TIMEOUT = 60
SINK_TIMEOUT = 20
API_TIMEOUT = 60
# The worker's drain takes up to its shutdown grace, plus a moment to report back (worker.py).
WORKER_STOP_MARGIN = 5


def main() -> int:
    stack = environment.prepare()
    if busy := ports_in_use(stack):
        say("devstack", f"already in use: {', '.join(busy)} (is another `make run` up?)")
        return 1
    supervisor = Supervisor(grace_seconds=10)
    supervisor.install_signal_handlers()
    try:
        start_stack(supervisor, stack)
        print_banner(stack)
        supervisor.run_forever()
    except StopRequested:
        say("devstack", "stopping")
        return 0
    except ChildExited as died:
        say("devstack", f"{died}; stopping everything")
        return exit_code_for(died.returncode)
    except NotReady as slow:
        say("devstack", f"{slow}; stopping everything")
        return 1
    finally:
        supervisor.stop_all()


def start_stack(supervisor: Supervisor, stack: DevStack) -> None:
    settings = stack.settings
    db_file = stack.data_dir / "temporal.db"
    partitions = database_partitions(db_file)
    if partitions != TASK_QUEUE_PARTITIONS:
        say(
            "devstack",
            f"{db_file} predates one partition per task queue: its server keeps {partitions} (priority, tenant "
            "weights and caps hold per partition; docs/delivery.md, 'Strict order', says how to move it)",
        )
    supervisor.start(
        "temporal",
        server_command(
            port=stack.temporal_port,
            ui_port=settings.temporal_ui_port,
            db_file=db_file,
            namespace=settings.temporal_namespace,
            full_sync=settings.temporal_full_sync,
            ui_codec_endpoint=api_url(stack) + "/codec",
            partitions=partitions,
        ),
    )
    if stack.smtp_sink_port is not None:
        supervisor.start(
            "smtp-sink",
            [
                PYTHON,
                "-m",
                "devstack.smtp_sink",
                "--host",
                HOST,
                "--port",
                str(stack.smtp_sink_port),
                "--outbox",
                str(stack.outbox),
            ],
        )
    if stack.sms_sink_port is not None:
        supervisor.start(
            "sms-sink",
            [
                PYTHON,
                "-m",
                "devstack.sms_sink",
                "--host",
                HOST,
                "--port",
                str(stack.sms_sink_port),
                "--dir",
                str(stack.sms_dir),
                "--token",
                settings.sms_gateway_token,
            ],
        )

    wait_until("Temporal frontend", port_open(HOST, stack.temporal_port), supervisor, TEMPORAL_TIMEOUT)
    wait_until(
        f"Temporal namespace {settings.temporal_namespace!r}",
        namespace_answers(stack.temporal_port, settings.temporal_namespace),
        supervisor,
        TEMPORAL_TIMEOUT,
    )
    set_retention(stack.temporal_port, settings.temporal_namespace, settings.temporal_retention_days)
    for name, port in (("SMTP sink", stack.smtp_sink_port), ("SMS sink", stack.sms_sink_port)):
        if port is not None:
            wait_until(name, port_open(HOST, port), supervisor, SINK_TIMEOUT)

    supervisor.start(
        "worker", [PYTHON, "-m", "worker"], stop_grace=settings.worker_shutdown_grace_seconds + WORKER_STOP_MARGIN
    )
    supervisor.start("api", [PYTHON, "-m", "api"])
    wait_until("API /readyz", http_ok(api_url(stack) + "/readyz"), supervisor, API_TIMEOUT)


def ports_in_use(stack: DevStack) -> list[str]:
    settings = stack.settings
    wanted = [
        ("Temporal", HOST, stack.temporal_port),
        ("Temporal UI", HOST, settings.temporal_ui_port),
        ("SMTP sink", HOST, stack.smtp_sink_port),
        ("SMS sink", HOST, stack.sms_sink_port),
        ("API", api_host(stack), settings.api_port),
    ]
    return [f"{name} port {port}" for name, host, port in wanted if port is not None and port_open(host, port)()]


def api_host(stack: DevStack) -> str:
    host = stack.settings.api_host
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def api_url(stack: DevStack) -> str:
    host = api_host(stack)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{stack.settings.api_port}"


def print_banner(stack: DevStack) -> None:
    settings = stack.settings
    api = api_url(stack)
    if stack.smtp_sink_port is not None:
        email = f"saved as .eml files in {stack.outbox} (SMTP sink on {HOST}:{stack.smtp_sink_port})"
    else:
        email = f"sent via {settings.smtp_host}:{settings.smtp_port}"
    if stack.sms_sink_port is not None:
        sms = f"recorded in {stack.sms_dir} (list: GET {settings.sms_gateway_url})"
    else:
        sms = f"sent to {settings.sms_gateway_url}"
    say_block(
        [
            "",
            "Herald dev stack is running",
            f"  API          {api}",
            f"  API docs     {api}/docs",
            f"  Temporal UI  http://{HOST}:{settings.temporal_ui_port}"
            f"  (namespace {settings.temporal_namespace}, server {HOST}:{stack.temporal_port};"
            f" payloads decrypted through {api}/codec)",
            f"  API key      {', '.join(settings.api_keys) or '(none: set HERALD_API_KEYS)'}"
            "  (Authorization: Bearer KEY)",
            f"  Admin token  {settings.admin_token or '(none: set HERALD_ADMIN_TOKEN)'}",
            f"  Email        {email}",
            f"  SMS          {sms}",
            *(
                [
                    f"  Webhooks     POST them to http://{HOST}:{stack.sms_sink_port}/webhooks/... "
                    f"(list, with signature check: GET http://{HOST}:{stack.sms_sink_port}/webhooks)"
                ]
                if stack.sms_sink_port is not None
                else []
            ),
            f"  Data         {stack.data_dir}",
            "A process that dies is started again. Ctrl-C to stop.",
            "",
        ]
    )


def exit_code_for(returncode: int) -> int:
    if returncode > 0:
        return returncode
    if returncode < 0:
        return 128 - returncode  # killed by signal N → 128 + N, as a shell reports it
    return 1  # exiting at all, even "successfully", is a failure for a long-running service


if __name__ == "__main__":
    sys.exit(main())
