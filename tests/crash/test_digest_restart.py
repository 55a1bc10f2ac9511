"""A digest survives `kill -9` of every process (DESIGN.md, "Preferences, quiet hours and digests"; issue 18).

Real processes throughout, as `make run` runs them: the Temporal dev server on a SQLite file
(`server_command`), `python -m devstack.smtp_sink`, `python -m worker` and `python -m api`. A user digests
the topic "orders" every 60 s (the least `every`: the dev server cannot skip time). Five emails join the
user's open digest; while they wait in it, the worker, the API and the server are killed with SIGKILL and
started again on the same data; two more emails join the same digest after the restart. When the digest's
time comes, one email reaches the sink (once), listing all seven items in the order they joined, and each
item's job ends completed with `result.digestId`; none went out alone.

The sink (the far edge, not Herald) keeps running throughout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devstack.readiness import port_open
from devstack.smtp_sink import read_outbox
from devstack.temporal_server import HOST, namespace_answers, server_command
from tests.support.temporal import ENCRYPTION_KEY, free_port

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "crash-test-key"
NAMESPACE = "default"
USER = "dora"
ADDRESS = "dora@example.com"
EVERY_S = 60  # the least a digest's `every` may be
BEFORE = [f"Order {n} shipped" for n in range(1, 6)]  # joined before the kill
AFTER = [f"Order {n} shipped" for n in range(6, 8)]  # joined after the restart
START_TIMEOUT = 60
STEP_TIMEOUT = 30
# After the digest's time: its timer fires, the email is sent, the seven jobs are told and complete.
SENT_WITHIN_S = 30


class Stack:
    """The sink, the server, the worker and the API, each started (again) on the same ports and data."""

    def __init__(self, tmp_path: Path) -> None:
        ports: set[int] = set()
        while len(ports) < 4:
            ports.add(free_port())
        self.temporal_port, self.ui_port, self.smtp_port, self.api_port = sorted(ports)
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.outbox = self.data_dir / "outbox"
        self.outbox.mkdir(parents=True)
        self.api_url = f"http://{HOST}:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        self.env.update(
            PYTHONUNBUFFERED="1",
            HERALD_TEMPORAL_ADDRESS=f"{HOST}:{self.temporal_port}",
            HERALD_TEMPORAL_NAMESPACE=NAMESPACE,
            HERALD_DATA_DIR=str(self.data_dir),
            HERALD_API_KEYS=API_KEY,
            HERALD_API_HOST=HOST,
            HERALD_API_PORT=str(self.api_port),
            HERALD_SMTP_HOST=HOST,
            HERALD_SMTP_PORT=str(self.smtp_port),
            HERALD_WEBHOOK_SECRET="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            HERALD_ENCRYPTION_KEY=ENCRYPTION_KEY,
            HERALD_WORKER_METRICS_PORT="0",
        )
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.runs: dict[str, int] = {}

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.runs[name] = self.runs.get(name, 0) + 1
        self.logs[name] = self.tmp_path / f"{name}-{self.runs[name]}.log"
        with self.logs[name].open("wb") as out:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.processes[name]

    def read_logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp_path.glob("*.log"))
        )

    def wait(self, what: str, probe: Callable[[], object], name: str | None = None, timeout: float = START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not (result := probe()):
            for process_name, process in self.processes.items():
                if process.poll() is not None:
                    pytest.fail(f"{what}: {process_name} exited with {process.returncode}\n{self.read_logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {timeout} s\n{self.read_logs()}")
            time.sleep(0.1)
        return result

    def start_sink(self) -> None:
        argv = [sys.executable, "-m", "devstack.smtp_sink", "--host", HOST, "--port", str(self.smtp_port)]
        self._start("smtp-sink", [*argv, "--outbox", str(self.outbox)])
        self.wait("SMTP sink", port_open(HOST, self.smtp_port))

    def start_herald(self) -> None:
        """The server, then the worker and the API, each ready."""
        db_file = self.data_dir / "temporal.db"
        self._start(
            "temporal",
            server_command(port=self.temporal_port, ui_port=self.ui_port, db_file=db_file, namespace=NAMESPACE),
        )
        self.wait("Temporal frontend", port_open(HOST, self.temporal_port))
        self.wait("Temporal namespace", namespace_answers(self.temporal_port, NAMESPACE))
        self._start("worker", [sys.executable, "-m", "worker"])
        self._start("api", [sys.executable, "-m", "api"])
        self.wait("worker polling", lambda: "worker polling" in self.logs["worker"].read_text(errors="replace"))

        def api_ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.api_url}/readyz", timeout=2, trust_env=False).status_code == 200
            return False

        self.wait("API /readyz", api_ready)

    def kill(self, *names: str) -> None:
        for name in names:
            process = self.processes.pop(name, None)
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    running = Stack(tmp_path)
    try:
        running.start_sink()
        running.start_herald()
        yield running
    finally:
        running.kill("api", "worker", "temporal", "smtp-sink")


def test_a_digest_survives_kill_9_of_the_server_the_worker_and_the_api(stack: Stack):
    timings: dict[str, float] = {}
    began = time.monotonic()
    api = httpx.Client(
        base_url=stack.api_url, timeout=30, trust_env=False, headers={"Authorization": f"Bearer {API_KEY}"}
    )

    def poll(path: str, accept: Callable[[dict], bool], what: str, timeout: float = STEP_TIMEOUT) -> dict:
        last: dict = {}

        def probe() -> dict | None:
            nonlocal last
            answer = api.get(path)
            assert answer.status_code == 200, answer.text
            last = answer.json()
            return last if accept(last) else None

        try:
            return stack.wait(what, probe, timeout=timeout)
        except pytest.fail.Exception:
            pytest.fail(f"{what}: last {path} answer {last}\n{stack.read_logs()}")

    def join(subject: str) -> tuple[str, dict]:
        """POST one email on the digested topic; wait until it waits in a digest (one after the other:
        the order they join is the order they were posted)."""
        body = {"to": ADDRESS, "subject": subject, "body": "Shipped", "userId": USER, "topic": "orders"}
        answer = api.post("/notify/email", json=body)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["notificationId"]
        waiting = poll(
            f"/jobs/{job_id}/status", lambda b: b["status"] == "delayed" and "digestId" in b, f"{subject} in a digest"
        )
        return job_id, waiting

    def open_digests() -> list[tuple[str, str, int, str]]:
        answer = api.get(f"/users/{USER}/digests")
        assert answer.status_code == 200, answer.text
        return [(d["digestId"], d["topic"], d["items"], d["nextAt"]) for d in answer.json()["digests"]]

    with api:
        user = {"email": ADDRESS, "name": "Dora", "digest": {"topics": ["orders"], "every": EVERY_S}}
        assert (put := api.put(f"/users/{USER}", json=user)).status_code == 200, put.text

        # The first item opens the digest, due EVERY_S from now; the others join it.
        first, opened = join(BEFORE[0])
        jobs = [first]
        digest_id, next_at = opened["digestId"], opened["nextAttemptAt"]
        for subject in BEFORE[1:]:
            job_id, waiting = join(subject)
            jobs.append(job_id)
            assert (waiting["digestId"], waiting["nextAttemptAt"]) == (digest_id, next_at), waiting
        due = datetime.fromisoformat(next_at)
        assert open_digests() == [(digest_id, "orders", len(BEFORE), next_at)]
        assert read_outbox(stack.outbox) == []  # nothing sent yet
        timings["joined"] = time.monotonic() - began

        # kill -9 all of Herald while the items wait in the digest; then start it again on the same data.
        stack.kill("worker", "api", "temporal")
        killed = time.monotonic()
        stack.start_herald()
        timings["restarted in"] = time.monotonic() - killed
        left = (due - datetime.now(UTC)).total_seconds()
        # The items after the restart must still find the digest open: a restart too slow to leave time for
        # that says nothing about the digest (and makes the test fail here, not on a confusing email).
        assert left > 10, f"the restart took {timings['restarted in']:.0f} s: the digest is due in {left:.0f} s"

        # The same open digest, the same items and time, as before the kill.
        assert open_digests() == [(digest_id, "orders", len(BEFORE), next_at)]
        for subject in AFTER:
            job_id, waiting = join(subject)
            jobs.append(job_id)
            assert (waiting["digestId"], waiting["nextAttemptAt"]) == (digest_id, next_at), waiting
        assert open_digests() == [(digest_id, "orders", len(BEFORE + AFTER), next_at)]
        assert read_outbox(stack.outbox) == []
        timings["joined after restart"] = time.monotonic() - began

        # At its time: every item completes, by the digest.
        wait_s = max((due - datetime.now(UTC)).total_seconds(), 0) + SENT_WITHIN_S
        for job_id in jobs:
            done = poll(
                f"/jobs/{job_id}/status",
                lambda b: b["status"] not in ("queued", "delayed", "processing"),
                f"{job_id} final",
                timeout=wait_s,
            )
            assert done["status"] == "completed", done
            assert done["result"] == {"digestId": digest_id} and done["digestId"] == digest_id, done
            assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [
                ("digest", "digested"),
                ("digest", "sent"),
            ], done
            assert api.get(f"/notifications/{job_id}").json()["status"] == "success"
            wait_s = STEP_TIMEOUT
        timings["all completed"] = time.monotonic() - began
        assert open_digests() == []

    # One email, once: the digest's, listing the seven items in the order they joined; none went alone.
    time.sleep(1)  # a second send (an activity retried after a send) would land about now
    mails = read_outbox(stack.outbox)
    assert [(m["Message-ID"], m["X-Envelope-To"]) for m in mails] == [(f"<{digest_id}@herald>", ADDRESS)], [
        (m["Message-ID"], m["Subject"]) for m in mails
    ]
    [mail] = mails
    assert mail["Subject"] == f"Your orders digest: {len(BEFORE + AFTER)} updates"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    listed = [line for line in text.splitlines() if line[:1].isdigit()]
    assert listed == [f"{n}. {subject}" for n, subject in enumerate(BEFORE + AFTER, 1)], text
    assert "Hello Dora" in text
    html = mail.get_body(preferencelist=("html",)).get_content()
    positions = [html.index(subject) for subject in BEFORE + AFTER]
    assert positions == sorted(positions), html
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
