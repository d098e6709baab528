"""``X-Amz-Target: Pysync_20261205.Batch``: several single-item calls in one HTTP request.

A browser pays for every HTTP request in CPU (building it, the fetch across its
processes, reading the reply): at one request per change a push reaches a
fraction of what a CPython client makes. A batch carries up to
:data:`MAX_CALLS` ``GetItem``/``PutItem``/``UpdateItem``/``DeleteItem`` calls;
the proxy checks each against the policy as if it came alone, signs and sends
each to DynamoDB as its own request (so each stays a plain write: one write unit,
its own condition, its own outcome), several at a time, and answers all of them
in order::

    {"Calls": [{"Operation": "PutItem", "Request": {...}}, ...]}
    -> {"Responses": [{"Status": 200, "Body": {...}}, {"Status": 400, "Body": {...}}, ...]}

Every call costs one rate-limit token; calls the subject's bucket cannot pay
for are answered ``429 ThrottlingException`` each, the others go on.
"""

from __future__ import annotations

import json
from typing import Any

from .._remote import BATCH_CALLS as MAX_CALLS
from .._remote import BATCH_TARGET, BATCHABLE
from ._errors import ProxyError, ValidationError

__all__ = ["BATCH_TARGET", "MAX_CALLS", "batch_calls", "batch_reply", "error_reply"]

#: Calls of one batch sent to DynamoDB at the same time.
CONCURRENCY = 16


def batch_calls(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ``(operation, request)`` calls of a batch body; 400 if it is malformed."""
    if set(document) != {"Calls"}:
        raise ValidationError("a batch is an object with exactly one member, Calls")
    calls = document["Calls"]
    if not isinstance(calls, list) or not 1 <= len(calls) <= MAX_CALLS:
        raise ValidationError(f"Calls must be a list of 1 to {MAX_CALLS} calls")
    parsed: list[tuple[str, dict[str, Any]]] = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or set(call) != {"Operation", "Request"}:
            raise ValidationError(f"Calls[{i}] must be an object with Operation and Request")
        operation, request = call["Operation"], call["Request"]
        if operation not in BATCHABLE:
            raise ValidationError(
                f"Calls[{i}].Operation must be one of {', '.join(sorted(BATCHABLE))}"
            )
        if not isinstance(request, dict):
            raise ValidationError(f"Calls[{i}].Request must be a JSON object")
        parsed.append((operation, request))
    return parsed


def error_reply(error: ProxyError) -> tuple[int, bytes]:
    """One call's answer for a refusal, in DynamoDB's error shape."""
    return error.status, error.body()


def batch_reply(replies: list[tuple[int, bytes]]) -> bytes:
    """The batch's answer: each call's status and body, in order.

    DynamoDB's bodies are spliced in as they came (no second parse); one that is
    not a JSON object (an intermediary's error page) is wrapped as a message.
    """
    parts = []
    for status, body in replies:
        if not body.strip():
            body = b"{}"
        elif not body.lstrip().startswith(b"{"):
            text = body[:200].decode(errors="replace")
            body = json.dumps({"__type": "UpstreamError", "message": text}).encode()
        parts.append(b'{"Status":%d,"Body":%s}' % (status, body))
    return b'{"Responses":[' + b",".join(parts) + b"]}"
