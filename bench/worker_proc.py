"""A worker process for one benchmark phase: `python -m bench.worker_proc '<json config>'`.

kind "bare": one Worker with the SDK's defaults for the naive email job (bench/bare.py). kind
"herald": Herald's real workers, worker.build_workers(client, get_settings()), configured by
HERALD_* variables and with logging set up exactly as `python -m worker` does.

Talks to the driver in JSON lines: prints {"event": "ready"} once polling, then answers each
line on stdin ("mark", "stop") with its own resource usage; "stop" shuts the workers down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from common.logs import configure_logging
from common.runtime import exit_skipping_teardown, freeze_startup_heap


def usage() -> dict:
    """Peak RSS (ru_maxrss and VmHWM, KiB), current RSS (VmRSS) and CPU seconds of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    status = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                status[line.split(":")[0]] = int(line.split()[1])
    return {
        "maxrss_kb": ru.ru_maxrss,
        "hwm_kb": status.get("VmHWM"),
        "rss_kb": status.get("VmRSS", 0),
        "cpu_s": ru.ru_utime + ru.ru_stime,
    }


def reset_peak_rss() -> bool:
    """Forget the start-up peak (imports, workflow validation), so the phase's peak is its own.

    Linux: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM, ru_maxrss) to the current RSS.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def say(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def build(client: Client, config: dict) -> list[Worker]:
    if config["kind"] == "bare":
        from bench.bare import TASK_QUEUE, SendEmailWorkflow
        from bench.bare_activity import send_email

        return [Worker(client, task_queue=TASK_QUEUE, workflows=[SendEmailWorkflow], activities=[send_email])]
    from common.settings import get_settings
    from worker import build_workers

    return build_workers(client, get_settings())


async def main(config: dict) -> None:
    if config["kind"] != "bare":
        configure_logging()
    if config["kind"] == "bare":
        client = await Client.connect(config["address"])
    else:  # as worker.py connects: Herald's data converter (the payload codec), HERALD_* settings
        from common.settings import get_settings
        from common.temporal import connect

        client = await connect(get_settings())
    workers = build(client, config)
    if config["kind"] != "bare":
        from common.settings import get_settings
        from common.task_queue_config import configure_job_queues

        # As worker.py does before its first poll: the start-up heap set aside, the tenants' weights and
        # cap on the job queues.
        freeze_startup_heap()
        await configure_job_queues(client, get_settings())
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as running:
        for w in workers:
            await running.enter_async_context(w)
        startup = usage()
        say(
            "ready",
            queues=[w.task_queue for w in workers],
            peak_reset=reset_peak_rss(),
            startup_hwm_kb=startup["hwm_kb"],
            **usage(),
        )
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "mark":
                say("mark", **usage())
            elif line in ("stop", ""):  # "" is EOF: the driver went away
                say("stopped", **usage())
                break
    say("exited")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
    exit_skipping_teardown(0)
