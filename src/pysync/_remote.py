"""Talking to DynamoDB (through the pysync proxy) in DynamoDB's own JSON protocol.

``HttpRemote`` posts ``X-Amz-Target: DynamoDB_20120810.<Op>`` requests with a
bearer token: with ``pyodide.http.pyfetch`` in the page (asynchronous, never
blocking the main thread), with httpx in CPython. Errors come back as typed
exceptions: retryable ones (network, 5xx, throttling) apart from permanent ones.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from ._errors import PysyncError

_RETRYABLE = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
}


TARGET_PREFIX = "DynamoDB_20120810."
#: The pysync proxy's batch of single-item calls (``pysync.server._batch``).
BATCH_TARGET = "Pysync_20261205.Batch"
#: Calls per batch request, and their JSON bytes (the proxy takes 100 and 4 MiB).
BATCH_CALLS = 100
BATCH_BYTES = 1024 * 1024
#: The operations a batch carries: each touches one item.
BATCHABLE = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem"})


class RemoteError(PysyncError):
    """DynamoDB (or the proxy) refused a request.

    ``code`` is the error name (``__type`` after the ``#``), ``status`` the HTTP
    status; ``body`` the parsed error document (it holds ``Item`` for a failed
    condition and ``CancellationReasons`` for a cancelled transaction).
    """

    def __init__(self, code: str, message: str, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        """Whether retrying later may succeed (network, 5xx, throttling)."""
        return self.status >= 500 or self.status in (0, 429) or self.code in _RETRYABLE


class Remote(Protocol):
    """Anything that answers DynamoDB JSON-protocol calls."""

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``operation`` with ``payload``; return the response or raise RemoteError."""
        ...


@runtime_checkable
class PageRemote(Remote, Protocol):
    """A :class:`Remote` that can keep a response in JavaScript (:class:`HttpRemote`
    in the page, or a wrapper around it that passes these on)."""

    @property
    def in_page(self) -> bool:
        """Whether :meth:`call_js` can be used now."""
        ...

    async def call_js(self, operation: str, payload: dict[str, Any]) -> Any:
        """Like ``call``; the parsed response as a ``JsProxy``."""
        ...


Send = Callable[[str, dict[str, str], bytes], Awaitable[tuple[int, bytes]]]


def token_function(token: Callable[[], str] | str) -> Callable[[], str]:
    """A function giving the current bearer token, from a token or such a function."""
    return token if callable(token) else (lambda: token)


class HttpRemote:
    """A :class:`Remote` over HTTP to the pysync proxy (or to anything speaking the protocol)."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str] | str,
        send: Send | None = None,
    ) -> None:
        self.url = url
        self._token = token_function(token)
        self._send = send or _default_send()
        self._batches = True

    async def close(self) -> None:
        """Release the connection pool (CPython); nothing to do in the page."""
        close = getattr(self._send, "aclose", None)
        if close is not None:
            await close()

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._post(TARGET_PREFIX + operation, json.dumps(payload).encode())

    @property
    def in_page(self) -> bool:
        """Whether requests go through the page's ``fetch`` (in Pyodide, without a
        ``send`` of the caller's): then :meth:`call_js` can be used."""
        return self._send is _pyfetch_send

    async def call_js(self, operation: str, payload: dict[str, Any]) -> Any:
        """Like :meth:`call`, but the response stays in JavaScript: its parsed JSON
        as a ``JsProxy``. Only when :attr:`in_page`.

        A base sync's pages are converted and stored without entering Python
        (``pysync._sync._images``); errors come back as from :meth:`call`.
        """
        from pyodide.ffi import JsException
        from pyodide.http import pyfetch

        body = json.dumps(payload)
        headers = self._headers(TARGET_PREFIX + operation)
        try:
            response = await pyfetch(self.url, method="POST", headers=headers, body=body)
            answer = None if response.status == 200 else await response.bytes()
        except Exception as error:  # the network: offline, reset, CORS, DNS …
            raise RemoteError("NetworkError", repr(error), 0, {}) from error
        if answer is not None:
            return self._answer(response.status, answer)  # raises: not a 200
        try:
            return await response.js_response.json()
        except JsException as error:  # cut short, or not JSON: retried as a 5xx is
            raise RemoteError("BadReply", repr(error)[:200], 502, {}) from error

    async def call_many(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        """Send single-item calls (``GetItem``, ``PutItem``, ``UpdateItem``,
        ``DeleteItem``) in as few requests as the proxy's batch takes; each call's
        response, or its error, in order.

        Each call is still its own DynamoDB request with its own outcome. A proxy
        without batches (an older one) is sent the calls one by one from then on;
        a batch refused as a whole for its content is sent again one call at a time,
        so that each call gets its own verdict.
        """
        if not self._batches:
            return await call_each(self.call, calls)
        bodies = [(op, json.dumps(payload).encode()) for op, payload in calls]
        groups: list[list[int]] = [[]]
        size = 0
        for i, (_, body) in enumerate(bodies):
            if groups[-1] and (len(groups[-1]) == BATCH_CALLS or size + len(body) > BATCH_BYTES):
                groups.append([])
                size = 0
            groups[-1].append(i)
            size += len(body)
        results: list[dict[str, Any] | RemoteError] = [{} for _ in calls]
        sends = (self._batch([calls[i] for i in g], [bodies[i] for i in g]) for g in groups)
        answers = await asyncio.gather(*sends)
        for group, answer in zip(groups, answers, strict=True):
            for i, result in zip(group, answer, strict=True):
                results[i] = result
        return results

    async def _batch(
        self, calls: list[tuple[str, dict[str, Any]]], bodies: list[tuple[str, bytes]]
    ) -> list[dict[str, Any] | RemoteError]:
        if len(calls) == 1:
            return await call_each(self.call, calls)
        body = b'{"Calls":[%s]}' % b",".join(
            b'{"Operation":"%s","Request":%s}' % (op.encode(), raw) for op, raw in bodies
        )
        try:
            document = await self._post(BATCH_TARGET, body)
            responses = document["Responses"]
            if not isinstance(responses, list) or len(responses) != len(calls):
                raise ValueError("a batch answered with another number of responses")
            return [_result(int(r["Status"]), r["Body"]) for r in responses]
        except RemoteError as error:
            if error.code == "UnknownOperationException":
                self._batches = False  # a proxy from before batches
            elif error.retryable or error.status == 401:
                return [error] * len(calls)  # about the request, not about its calls
            return await call_each(self.call, calls)
        except (KeyError, TypeError, ValueError) as error:  # not the proxy's batch answer
            lost = RemoteError("BadBatchReply", repr(error), 502, {})
            return [lost] * len(calls)

    def _headers(self, target: str) -> dict[str, str]:
        return {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": target,
            "Authorization": f"Bearer {self._token()}",
        }

    async def _post(self, target: str, body: bytes) -> dict[str, Any]:
        try:
            status, answer = await self._send(self.url, self._headers(target), body)
        except RemoteError:
            raise
        except Exception as error:  # the network: offline, reset, CORS, DNS …
            raise RemoteError("NetworkError", repr(error), 0, {}) from error
        return self._answer(status, answer)

    @staticmethod
    def _answer(status: int, answer: bytes) -> dict[str, Any]:
        """The response document of a call, or raise the RemoteError it holds."""
        try:
            document = json.loads(answer) if answer else {}
        except ValueError:
            document = {"message": answer[:200].decode(errors="replace")}
        result = _result(status, document)
        if isinstance(result, RemoteError):
            raise result
        return result


def _result(status: int, body: Any) -> dict[str, Any] | RemoteError:
    """A call's response, or the RemoteError its status and error document say."""
    document: dict[str, Any] = body if isinstance(body, dict) else {"message": str(body)[:200]}
    if status == 200:
        return document
    kind = str(document.get("__type", "UnknownError")).rsplit("#", 1)[-1]
    message = str(document.get("message") or document.get("Message") or "")
    return RemoteError(kind, message, status, document)


async def call_each(
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
    calls: list[tuple[str, dict[str, Any]]],
) -> list[dict[str, Any] | RemoteError]:
    """``call`` each of ``calls`` concurrently; each one's response or RemoteError."""

    async def one(operation: str, payload: dict[str, Any]) -> dict[str, Any] | RemoteError:
        try:
            return await call(operation, payload)
        except RemoteError as error:
            return error

    return list(await asyncio.gather(*(one(op, payload) for op, payload in calls)))


def _default_send() -> Send:
    if sys.platform == "emscripten":
        return _pyfetch_send
    return _HttpxSend()


async def _pyfetch_send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    from pyodide.http import pyfetch

    response = await pyfetch(url, method="POST", headers=headers, body=body.decode())
    return response.status, await response.bytes()


class _HttpxSend:
    def __init__(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(timeout=30)

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(url, headers=headers, content=body)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()
