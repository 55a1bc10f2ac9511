"""The baseline's one activity: POST a small JSON body to the receiver, nothing else.

One shared httpx client (what a minimal hand-written activity would use). No signing, no SSRF
guard, no attempt report: those are what Herald adds, and what the benchmark should see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio import activity


@dataclass
class BareInput:
    url: str
    job_id: str
    data: Any


_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(timeout=httpx.Timeout(10, connect=5))
    return _client


@activity.defn(name="bench_post")
async def post(request: BareInput) -> int:
    body = json.dumps(request.data, separators=(",", ":")).encode()
    response = await _http().post(request.url, content=body,
                                  headers={"Content-Type": "application/json", "webhook-id": request.job_id})
    response.raise_for_status()
    return response.status_code
