"""A lean HTTP/1.1 client for the driver: keep-alive connections over asyncio streams.

The driver shares the machine's two cores with the dev server, so its own cost per request
counts against whatever it measures: httpx spends about 2 ms of CPU per POST here, this about
a tenth of that. It speaks just what Herald's API answers (uvicorn: Content-Length bodies or
chunked ones) and is used only against 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# uvicorn closes a connection idle for 5 s (timeout_keep_alive); ours are dropped well before.
IDLE_LIMIT_S = 2.0


class HttpError(Exception):
    pass


@dataclass
class Response:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and time.monotonic() - self.idle_since < IDLE_LIMIT_S
        )

    def close(self) -> None:
        self.writer.close()


class LeanHttp:
    def __init__(self, base_url: str, headers: dict[str, str], max_connections: int, timeout: float = 30) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", **headers}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Conn] = []
        self._gate = asyncio.Semaphore(max_connections)
        self.timeout = timeout

    async def post(self, path: str, json_body: Any) -> Response:
        body = json.dumps(json_body, separators=(",", ":")).encode()
        return await self.request("POST", path, body)

    async def get(self, path: str) -> Response:
        return await self.request("GET", path, None)

    async def request(self, method: str, path: str, body: bytes | None) -> Response:
        head = f"{method} {path} HTTP/1.1\r\n{self._head}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode() + (body or b"")
        async with self._gate:
            conn = await self._connection()
            try:
                async with asyncio.timeout(self.timeout):
                    conn.writer.write(data)
                    response, keep = await self._read(conn.reader)
            except BaseException:
                conn.close()
                raise
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return response

    async def _connection(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Conn(reader, writer)

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[Response, bool]:
        status_line = await reader.readline()
        if not status_line:
            raise HttpError("connection closed before an answer")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                parts.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            body = b"".join(parts)
        else:
            body = await reader.read()
            return Response(status, body), False
        return Response(status, body), headers.get("connection", "").lower() != "close"

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
