"""The sinks as the launcher runs them: `python -m devstack.smtp_sink` / `devstack.sms_sink`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest

from devstack.smtp_sink import read_outbox


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


@pytest.fixture
def run():
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=10)


# uvicorn shuts down gracefully, then re-raises the signal so its exit status reports it.
STOPPED = (0, -signal.SIGTERM)


async def test_smtp_sink_command(run, tmp_path, free_port):
    port = free_port()
    process = run(
        "devstack.smtp_sink", "--host", "127.0.0.1", "--port", str(port), "--outbox", str(tmp_path / "outbox")
    )
    wait_for_port(port, process)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "hi"
    msg.set_content("hello")
    await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, timeout=10)
    assert stop(process) == 0
    assert [m["Subject"] for m in read_outbox(tmp_path / "outbox")] == ["hi"]


async def test_sms_sink_command(run, tmp_path, free_port):
    port = free_port()
    process = run(
        "devstack.sms_sink",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(tmp_path / "sms"),
        "--token",
        "t0k",
    )
    wait_for_port(port, process)
    url = f"http://127.0.0.1:{port}/messages"
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.post(
            url,
            json={"to": "+15550100", "body": "hi", "idempotencyKey": "k"},
            headers={"Authorization": "Bearer t0k", "Idempotency-Key": "k"},
        )
        assert answer.status_code == 200
        assert [r["id"] for r in (await client.get(url)).json()] == [answer.json()["id"]]
    assert stop(process) in STOPPED
    assert len(list((tmp_path / "sms").glob("*.json"))) == 1
