"""The web console: server-rendered pages over the public /v1 API.

Every page and every action goes through the service's own /v1 routes over the
loopback connection the request came in on (``client.py``), with the browser's token
from its cookie, so the console honours exactly the API's validation, idempotency,
tokens, scopes and rate limits. Reading works without JavaScript; ``static/console.js``
adds the live preview, live updates from the event stream and in-place actions.
"""

from __future__ import annotations

from service.console.setup import setup_console

__all__ = ["setup_console"]
