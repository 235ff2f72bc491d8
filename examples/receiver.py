"""A webhook receiver to watch cronstream's deliveries: prints each one and answers 204.

Standard library only. Listens on 127.0.0.1 and prints, for every request, its
method and path, the ``cronstream-*`` and ``webhook-*`` headers, and the body::

    python3 examples/receiver.py --port 9000

Stop it with Ctrl-C. It checks no signature: examples/verify_webhook.py shows how.
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

SHOWN_PREFIXES = ("cronstream-", "webhook-id")


class Receiver(BaseHTTPRequestHandler):
    deliveries = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        Receiver.deliveries += 1
        lines = [f"delivery {Receiver.deliveries}: {self.command} {self.path}"]
        for name, value in sorted(self.headers.items()):
            if name.lower().startswith(SHOWN_PREFIXES):
                lines.append(f"  {name.lower()}: {value}")
        lines.append(f"  body: {body.decode(errors='replace')}")
        print("\n".join(lines), flush=True)
        self.send_response(204)
        self.end_headers()

    # a workflow's target.method may be any of these
    do_PUT = do_PATCH = do_DELETE = do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the delivery lines above are the whole output."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000, help="port on 127.0.0.1 (default 9000)")
    args = parser.parse_args(argv)
    server = HTTPServer(("127.0.0.1", args.port), Receiver)
    print(f"receiver: listening on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
