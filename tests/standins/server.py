"""A small threaded HTTP(S) server for the stand-ins, on 127.0.0.1 and a free port.

A `Service` turns a `Request` into a `Reply`; the server does the rest: TLS (the handshake runs in the
connection's own thread, so a slow client never blocks `accept`), HTTP/1.1 keep-alive (pooled clients
reuse their connections), a reply's delay (cut short when the server stops), and a "reset" reply that
drops the connection without answering (an RST, as a crashed peer or a load balancer would).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it."""

    method: str
    target: str  # the request target as sent: raw path and query
    headers: dict[str, str]
    body: bytes
    arrival: float  # time.monotonic() when the request line and headers had arrived

    @property
    def path(self) -> str:
        """The raw (still percent-encoded) path."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def form(self) -> dict[str, str]:
        """The body as application/x-www-form-urlencoded fields (last value wins)."""
        fields = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {key: values[-1] for key, values in fields.items()}


@dataclass(frozen=True)
class Reply:
    """What to answer: a status, headers and a JSON body (or raw bytes), after `delay` seconds.

    `reset=True` closes the connection without answering anything.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    reset: bool = False
    chunked: bool = False  # sent with Transfer-Encoding: chunked (no Content-Length), 64 KiB a chunk
    drip: float = 0.0  # > 0: the body goes out one byte at a time, this many seconds apart (a slow-drip peer)

    def payload(self) -> tuple[bytes, str | None]:
        if self.body is None:
            return b"", None
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        return json.dumps(self.body).encode("utf-8"), "application/json"


RESET = Reply(status=0, reset=True)


class Service:
    """Base of the stand-ins' request handling. Subclasses override `handle`."""

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    @contextlib.contextmanager
    def tracking(self, request: Request) -> Iterator[None]:
        """Spans handling, delay and writing of one request (the Graph stand-in counts in-flight requests)."""
        yield


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is dropped after this
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server: StandinServer

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        arrival = time.monotonic()
        if not self.parse_request():
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            target=self.path,
            headers={key: value for key, value in self.headers.items()},
            body=body,
            arrival=arrival,
        )
        service = self.server.service
        with service.tracking(request):
            try:
                reply = service.handle(request)
            except Exception as exc:  # a bug in a stand-in: answer 500 and keep it for the test to see
                logger.exception("stand-in failed on %s %s", request.method, request.target)
                self.server.errors.append(exc)
                reply = Reply(500, body={"error": {"code": "standinError", "message": repr(exc)}})
            if reply.delay > 0 and self.server.stopping.wait(reply.delay):
                reply = RESET
            if reply.reset:
                self._reset()
                return
            self._write(reply)

    def _reset(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _write(self, reply: Reply) -> None:
        payload, content_type = reply.payload()
        self.send_response(reply.status)
        names = {name.lower() for name in reply.headers}
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if content_type and "content-type" not in names:
            self.send_header("Content-Type", content_type)
        if reply.chunked:
            self._write_chunked(payload)
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if reply.drip > 0:
            self._write_dripping(payload, reply.drip)
            return
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _write_chunked(self, payload: bytes) -> None:
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for start in range(0, len(payload), 65536):
                chunk = payload[start : start + 65536]
                self.wfile.write(f"{len(chunk):x}\r\n".encode("ascii") + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client gave up reading: expected when it enforces a size limit
            self.close_connection = True

    def _write_dripping(self, payload: bytes, interval: float) -> None:
        try:
            self.wfile.flush()
            for index in range(len(payload)):
                if index and self.server.stopping.wait(interval):
                    break
                self.wfile.write(payload[index : index + 1])
                self.wfile.flush()
        except OSError:  # the client gave up: expected when it enforces a deadline
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("stand-in %s: " + format, self.address_string(), *args)


class StandinServer(ThreadingHTTPServer):
    """A `ThreadingHTTPServer` serving one `Service` on 127.0.0.1 (any free port unless given), TLS if given."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(
        self, service: Service, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.service = service
        self.tls = tls
        self.errors: list[BaseException] = []
        self.started = threading.Event()
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can be slow; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection: socket.socket = request
        if self.tls is not None:
            connection.settimeout(10)
            try:
                connection = self.tls.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                logger.debug("stand-in TLS handshake failed: %s", exc)
                return
        with self._connections_lock:
            self._connections.add(connection)
        try:
            _Handler(connection, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and went away makes the late answer fail: expected here, not a test failure.
        logger.debug("stand-in connection from %s ended with an error", client_address, exc_info=True)

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        self.started.set()  # the socket is bound and listening since __init__: connections queue from now on
        super().serve_forever(poll_interval)

    def serve_in_thread(self, deadline: float = 10.0) -> StandinServer:
        """Serve in a daemon thread and return once the server is serving (or raise after `deadline` s)."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"standin-{self.port}", daemon=True)
        self._thread.start()
        if not self.started.wait(deadline):
            raise RuntimeError(f"stand-in on port {self.port} did not start within {deadline} s")
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed replies, drop open connections and close the listening socket."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()
