"""A real ASGI upstream for tokengate's end-to-end suites (internal/realupstream).

Starlette routes the requests and Debian's hypercorn serves them, both in their default
configuration: hypercorn answers `Upgrade: h2c` with 101 and then speaks HTTP/2 on the
connection, which is one of the behaviours the suites look for, so nothing here may
turn it off.

    /usr/bin/python3 -m hypercorn --bind fd://3 app:app
    REALUPSTREAM_RECORDS=FILE   where each request is appended as one JSON line

At startup it prints `REALUPSTREAM READY {"version": ...}` on stdout.
"""

import importlib.metadata
import json
import os
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

RECORDS_FD = os.open(os.environ["REALUPSTREAM_RECORDS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

VERSION = "hypercorn {} + starlette {} (h11 {}, h2 {}, python {})".format(
    *(importlib.metadata.version(name) for name in ("hypercorn", "starlette", "h11", "h2")),
    sys.version.split()[0],
)


class Recorder:
    """An ASGI endpoint that records the request under a route name.

    A class rather than a function, because Starlette restricts a function endpoint
    without `methods` to GET and HEAD, and the admin and fallback routes take any method.
    """

    def __init__(self, route: str) -> None:
        self.route = route

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        body_bytes = 0
        async for chunk in request.stream():
            body_bytes += len(chunk)
        headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        raw_query = scope["query_string"].decode("latin-1")
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if raw_query:
            target += "?" + raw_query
        record = {
            "server": "hypercorn",
            "route": self.route,
            "method": scope["method"],
            "path": scope["path"],
            "target": target,
            "rawQuery": raw_query,
            "proto": "HTTP/" + scope["http_version"],
            "host": request.url.netloc,
            "headers": headers,
            "bodyBytes": body_bytes,
        }
        # O_APPEND and one write per line: a reader never sees two records interleaved.
        os.write(RECORDS_FD, (json.dumps(record) + "\n").encode())
        await JSONResponse(record)(scope, receive, send)


def ready() -> None:
    print("REALUPSTREAM READY " + json.dumps({"version": VERSION}), flush=True)


ANY = None  # Starlette lets an ASGI endpoint without methods take every method.

app = Starlette(
    routes=[
        Route("/healthz", Recorder("health"), methods=["GET"]),
        Route("/orders/{id}", Recorder("orders.show"), methods=["GET"]),
        Route("/orders", Recorder("orders.create"), methods=["POST"]),
        Route("/orders/{id}", Recorder("orders.delete"), methods=["DELETE"]),
        Route("/admin/{rest:path}", Recorder("admin"), methods=ANY),
        Route("/{rest:path}", Recorder("fallback"), methods=ANY),
    ],
    on_startup=[ready],
)
