"""Plumbing shared by the sandbox servers: request/response, fault injection, a threaded server."""

from __future__ import annotations

import hmac
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of a signature, secret or token a client sent. Both sides are
    compared as UTF-8 bytes: ``hmac.compare_digest`` raises on non-ASCII text, and a header
    is whatever bytes a stranger sent (http.server hands them over as latin-1 text)."""
    return hmac.compare_digest(
        str(expected).encode("utf-8", "surrogateescape"),
        str(given).encode("utf-8", "surrogateescape"),
    )


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def form_files(self) -> dict[str, tuple[str, bytes]]:
        """multipart/form-data parts as {field: (filename, bytes)}."""
        ctype = self.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return {}
        msg = message_from_bytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + self.body, policy=HTTP
        )
        files: dict[str, tuple[str, bytes]] = {}
        if not msg.is_multipart():
            return files
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                files[str(name)] = (part.get_filename() or "", payload)
        return files


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        return cls(
            status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        )


@dataclass
class Fault:
    kind: str  # "error" | "hang"
    status: int | None = None
    errcode: int | None = None
    seconds: float = 0.0
    after: bool = False  # hang after processing: the remote acted, the answer is lost
    retry_after: str | None = None  # Retry-After header on an injected error


class Faults:
    """Fault injection for one server; thread-safe, deterministic for a given seed.

    * ``latency``: seconds added to every answer.
    * ``error_rate``: share of requests answered with the server's transient error (WeChat:
      errcode -1; others: HTTP 503), drawn from ``random.Random(seed)``.
    * ``timeout_rate``: share of requests that hang ``hang_seconds`` and are then dropped.
    * ``fail_next(n, status=503 | errcode=-1, retry_after=None)``: the next n requests fail
      that way (with a Retry-After header when given).
    * ``hang_next(n, seconds, after=False)``: the next n requests hang, then the connection is
      dropped; with ``after=True`` the request is processed first (the remote acted but the
      client never hears it: the ambiguous case).
    """

    def __init__(
        self,
        latency: float = 0.0,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        hang_seconds: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.latency = latency
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.hang_seconds = hang_seconds
        self._rng = random.Random(seed)
        self._queue: deque[Fault] = deque()
        self._lock = threading.Lock()

    def fail_next(
        self,
        n: int = 1,
        status: int | None = None,
        errcode: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        with self._lock:
            for _ in range(n):
                self._queue.append(
                    Fault("error", status=status, errcode=errcode, retry_after=retry_after)
                )

    def hang_next(self, n: int = 1, seconds: float | None = None, after: bool = False) -> None:
        with self._lock:
            for _ in range(n):
                self._queue.append(
                    Fault(
                        "hang",
                        seconds=self.hang_seconds if seconds is None else seconds,
                        after=after,
                    )
                )

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.error_rate = self.timeout_rate = self.latency = 0.0

    def decide(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self.timeout_rate and self._rng.random() < self.timeout_rate:
                return Fault("hang", seconds=self.hang_seconds)
            if self.error_rate and self._rng.random() < self.error_rate:
                return Fault("error")
        return None


class SandboxApp:
    """One sandbox service: subclasses implement ``route`` and ``transient_error``."""

    name = "sandbox"
    persistent: tuple[str, ...] = ()  # attributes kept across restarts (``sandbox/state.py``)
    record_types: dict[str, type] = {}  # dataclasses those attributes hold

    def __init__(
        self, faults: Faults | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.faults = faults or Faults()
        self.lock = threading.RLock()
        self.base_url = ""
        self._clock = clock
        self.clock_offset = 0.0  # seconds added to the clock (tests move days forward)
        self.requests = 0
        self.stopping = threading.Event()
        self.after_request: Callable[[], None] | None = None  # e.g. save the state

    def now(self) -> float:
        return self._clock() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def route(self, req: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def transient_error(self, fault: Fault) -> Response:
        if fault.errcode is not None and not fault.status:  # an API-level error, HTTP 200
            return Response.json({"errcode": fault.errcode, "errmsg": "system busy (injected)"})
        status = fault.status or 503
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return Response.json({"error": "service unavailable (injected)"}, status, headers)

    def handle(self, req: Request) -> Response | None:
        """None means: drop the connection without an answer."""
        with self.lock:
            self.requests += 1
        fault = self.faults.decide()
        if self.faults.latency:
            self.stopping.wait(self.faults.latency)
        if fault and fault.kind == "hang" and not fault.after:
            self.stopping.wait(fault.seconds)
            return None
        if fault and fault.kind == "error":
            return self.transient_error(fault)
        response = self.route(req)
        if self.after_request is not None:
            self.after_request()
        if fault and fault.kind == "hang" and fault.after:
            self.stopping.wait(fault.seconds)
            return None
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        req = Request(
            method=self.command,
            path=parts.path,
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            resp = self.server.app.handle(req)
        except Exception as exc:  # noqa: BLE001 - a sandbox bug answers 500, never kills the thread
            resp = Response.json({"error": f"sandbox failure: {exc!r}"}, 500)
        if resp is None:
            self.close_connection = True
            return
        self.send_response(resp.status)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve  # noqa: N815


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxApp, verbose: bool = False) -> None:
        self.app = app
        self.verbose = verbose
        super().__init__(address, _Handler)


class Running:
    """One app served on a thread."""

    def __init__(self, app: SandboxApp, host: str, port: int, verbose: bool = False) -> None:
        self.app = app
        self.server = SandboxHTTPServer((host, port), app, verbose=verbose)
        host, port = self.server.server_address[:2]
        app.base_url = f"http://{host}:{port}"
        app.stopping.clear()
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"sandbox-{app.name}",
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return self.app.base_url

    def stop(self) -> None:
        self.app.stopping.set()  # wakes hanging handlers
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
