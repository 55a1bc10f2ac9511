"""The baseline's activity, written as a user would from the Temporal samples: send one email.

aiosmtplib.send to the SMTP server, one connection per message, no Message-ID of its own, no
attempt log, no memo, no status: what Herald adds on top of this is what the benchmark measures.
The server's address comes from the environment (BENCH_SMTP_HOST, BENCH_SMTP_PORT).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from temporalio import activity

SMTP_HOST = os.environ.get("BENCH_SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("BENCH_SMTP_PORT", "1025"))


@dataclass
class EmailRequest:
    to: str
    subject: str
    body: str


@activity.defn
async def send_email(request: EmailRequest) -> str:
    message = EmailMessage()
    message["From"] = "bench@localhost"
    message["To"] = request.to
    message["Subject"] = request.subject
    message.set_content(request.body)
    await aiosmtplib.send(message, hostname=SMTP_HOST, port=SMTP_PORT)
    return "sent"
