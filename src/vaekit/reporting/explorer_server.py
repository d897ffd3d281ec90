"""The explorer's HTTP server: routes, the request handler, and a server bound to 127.0.0.1 only.

Built on the standard library's `ThreadingHTTPServer`; model calls are serialized by the `Explorer`.
"""

from __future__ import annotations

import errno
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from vaekit.errors import UserError
from vaekit.reporting.explorer import Explorer
from vaekit.reporting.explorer_requests import (
    TEXT,
    Reply,
    RequestError,
    expect_fields,
    integer_field,
    interpolation_request,
    json_reply,
    latent_code,
    parse_json_object,
)

logger = logging.getLogger(__name__)
HOST = "127.0.0.1"  # never all interfaces: the page serves a run's weights and test data to whoever connects
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # Host headers accepted (anything else is DNS rebinding)
MAX_BODY_BYTES = 64 * 1024  # a code of D floats is a few KB even for D in the hundreds
DRAIN_BYTES = 1024 * 1024  # an oversized body is read away up to this, so the client can read our 413
SOCKET_TIMEOUT_S = 30  # a client that declares a body and never sends it ties up a thread no longer
# The page may load only from this server: no CDN, no external request, even by mistake.
PAGE_POLICY = "default-src 'self'; img-src 'self' data:; script-src 'unsafe-inline'; style-src 'unsafe-inline'"

RouteAction = Callable[["ExplorerServer", "re.Match[str]", "dict[str, Any] | None"], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    action: RouteAction
    takes_body: bool = False


def _page(server: ExplorerServer, match: re.Match[str], body: dict[str, Any] | None) -> Reply:
    return Reply(server.page, "text/html; charset=utf-8")


def _decode(server: ExplorerServer, match: re.Match[str], body: dict[str, Any] | None) -> Reply:
    return server.explorer.decode(*latent_code(body or {}, server.explorer.latent_dim, server.explorer.classes))


def _encode(server: ExplorerServer, match: re.Match[str], body: dict[str, Any] | None) -> Reply:
    body = body or {}
    expect_fields(body, ("index",))
    index = integer_field(body, "index", 0, len(server.explorer.strip) - 1)
    return json_reply(server.explorer.encode(index))


def _interpolate(server: ExplorerServer, match: re.Match[str], body: dict[str, Any] | None) -> Reply:
    return server.explorer.interpolate(*interpolation_request(body or {}, len(server.explorer.strip)))


ROUTES = (
    Route("GET", re.compile(r"/(index\.html)?"), _page),
    Route("GET", re.compile(r"/api/info"), lambda server, match, body: json_reply(server.explorer.info())),
    Route("GET", re.compile(r"/api/example/(\d{1,9})\.(png|json)"),
          lambda server, match, body: server.explorer.example(int(match[1]), as_png=match[2] == "png")),
    Route("POST", re.compile(r"/api/decode"), _decode, takes_body=True),
    Route("POST", re.compile(r"/api/encode"), _encode, takes_body=True),
    Route("POST", re.compile(r"/api/interpolate"), _interpolate, takes_body=True),
)
ROUTE_LIST = "GET /, GET /api/info, GET /api/example/<i>.png|.json, POST /api/decode, /api/encode, /api/interpolate"


def find_route(method: str, path: str) -> tuple[Route, re.Match[str]]:
    """The route for a request, or a 404 (no such path) or 405 (the path exists, not for this method)."""
    matches = [(route, match) for route in ROUTES if (match := route.pattern.fullmatch(path))]
    for route, match in matches:
        if route.method == method:
            return route, match
    if matches:
        allowed = ", ".join(route.method for route, _ in matches)
        raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: this route takes {allowed}")
    raise RequestError(HTTPStatus.NOT_FOUND, f"{path[:200]}: no such route; the routes are {ROUTE_LIST}")


# --- the server ---------------------------------------------------------------------------------------


class ExplorerHandler(BaseHTTPRequestHandler):
    """One request: find its route, read and check its body, answer; every failure becomes one line."""

    server: ExplorerServer
    timeout = SOCKET_TIMEOUT_S
    # http.server's own refusals (a malformed request line, an unknown method) in one plain line too
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = TEXT

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def _answer(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            self._check_host()
            route, match = find_route(method, path)
            body = parse_json_object(self._read_body()) if route.takes_body else None
            reply = route.action(self.server, match, body)
        except RequestError as refusal:
            reply = Reply(f"{refusal.reason}\n".encode(), TEXT, refusal.status)
        except UserError as error:  # the library's own wording of a bad input
            reply = Reply(f"{error}\n".encode(), TEXT, HTTPStatus.BAD_REQUEST)
        except Exception as error:
            logger.exception("explore: %s %s failed", method, path[:200])
            first_line = (str(error).splitlines() or [""])[0][:200]
            reason = f"internal error ({type(error).__name__}: {first_line}); the server's log has the traceback"
            reply = Reply(f"{reason}\n".encode(), TEXT, HTTPStatus.INTERNAL_SERVER_ERROR)
        self._send(reply)

    def _check_host(self) -> None:
        # A page on another site that re-points its own name at 127.0.0.1 (DNS rebinding) still says its name.
        host = self.headers.get("Host")
        if host is not None and urlsplit(f"//{host}").hostname not in LOCAL_HOSTS:
            raise RequestError(HTTPStatus.FORBIDDEN, f"Host {host[:100]!r}: this explorer answers only "
                               f"http://{HOST}:{self.server.server_port}/")

    def _read_body(self) -> bytes:
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the JSON body with a Content-Length header")
        if not declared.strip().isdigit():
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {declared[:40]!r} is not a number of bytes")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self._drain(length)
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {length} bytes; this server takes "
                               f"at most {MAX_BODY_BYTES} ({MAX_BODY_BYTES // 1024} KB)")
        try:
            return self.rfile.read(length)
        except OSError:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body ended before its Content-Length") from None

    def _drain(self, length: int) -> None:
        """Read an oversized body away (up to DRAIN_BYTES), so that the client, still sending, sees our 413."""
        left = min(length, DRAIN_BYTES)
        try:
            while left > 0 and (chunk := self.rfile.read(min(left, 65536))):
                left -= len(chunk)
        except OSError:
            pass
        self.close_connection = True

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", PAGE_POLICY)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # Every request would otherwise go to stderr; the CLI shows the library's warnings only.
        logger.debug("explore: " + format, *args)


class ExplorerServer(ThreadingHTTPServer):
    """The explorer's HTTP server: each request in a daemon thread, so Ctrl-C never waits for a client."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], explorer: Explorer):
        self.explorer = explorer
        self.page = resources.files("vaekit.reporting").joinpath("explorer.html").read_bytes()
        super().__init__(address, ExplorerHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_port}/"

    def handle_error(self, request: Any, client_address: tuple[str, int]) -> None:
        """What escapes ExplorerHandler._answer: socket errors. A client that hung up mid-reply (a page that
        moved on) or went silent is no fault of ours; anything else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.debug("explore: the client at %s hung up or went silent", client_address[0], exc_info=True)
        else:
            logger.exception("explore: a request from %s failed", client_address[0])


def make_server(explorer: Explorer, port: int) -> ExplorerServer:
    """An explorer server listening on 127.0.0.1:`port` (0: any free port; `.url` says which)."""
    try:
        return ExplorerServer((HOST, port), explorer)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: already in use (by another explore?); pass another --port, "
                            "e.g. --port 0 for any free one") from None
        if error.errno == errno.EACCES:
            raise UserError(f"--port {port}: not allowed here (ports below 1024 need root); pass --port 8765 "
                            "or --port 0 for any free one") from None
        raise UserError(f"--port {port}: cannot listen on {HOST} ({error.strerror}); pass another --port") from None
