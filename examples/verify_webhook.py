"""Check that a webhook delivery came from cronstream: pip install standardwebhooks."""

import os
from typing import Any

from standardwebhooks import Webhook

# the value of the variable that the workflow's target.secret_env names on the workers
secret = os.environ["CRONSTREAM_WEBHOOK_SECRET"]
# a whsec_ secret is base64 (padded or not); any other string signs with its UTF-8 bytes
webhook = Webhook(secret if secret.startswith("whsec_") else secret.encode())


def verified(body: bytes, headers: dict[str, str]) -> Any:
    """The delivery's JSON body, if cronstream signed it in the last five minutes.

    Pass the raw body bytes, before any parsing. Raises
    standardwebhooks.WebhookVerificationError for a forged, altered or stale delivery.
    A retried delivery has the same webhook-id (the run id): dedupe on it.
    """
    return webhook.verify(body, headers)
