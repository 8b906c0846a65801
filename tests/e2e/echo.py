"""An upstream that echoes what it received, for the end-to-end tests and the demo.

    python echo.py --port P

Serves on 127.0.0.1 only. Every method on every path answers 200 with a JSON body
``{"method", "path", "headers": {lowercased name: value}, "body"}`` (repeated headers are joined
with ", "; ``body`` is the request body decoded as UTF-8 with replacement). Prints ``ready`` on
stdout once it listens; exits 0 on SIGTERM or SIGINT. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's upstream connections expect
    server_version = "tollgate-echo"

    def _echo(self) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": raw.decode("utf-8", "replace"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = _echo

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(f"echo: {self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Bursts of allowed requests from two Envoy workers arrive at once: keep them all queued.
    request_queue_size = 128
    allow_reuse_address = True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    server = Server(("127.0.0.1", args.port), EchoHandler)

    def stop(signum: int, _frame: object) -> None:
        # shutdown() blocks until serve_forever returns: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
