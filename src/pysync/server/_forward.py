"""Pooled HTTP client that sends signed requests to DynamoDB and returns its raw reply."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ._errors import ProxyError

#: Response headers passed back to the browser; everything else stays at the proxy.
FORWARDED_RESPONSE_HEADERS = ("content-type", "x-amzn-requestid", "x-amz-crc32")


@dataclass(frozen=True)
class UpstreamResponse:
    """DynamoDB's reply: status, the forwarded headers, and the body bytes as received."""

    status: int
    headers: dict[str, str]
    body: bytes


class Forwarder:
    """Keep-alive connection pool to one DynamoDB endpoint."""

    def __init__(self, url: str, *, timeout: float = 10.0, max_connections: int = 64) -> None:
        self.url = url
        self._client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Only the signed headers go out: no browser headers, no cookies, no env proxies.
            trust_env=False,
            follow_redirects=False,
        )

    async def send(self, body: bytes, signed_headers: dict[str, str]) -> UpstreamResponse:
        """POST ``body`` with exactly ``signed_headers`` (plus Host/Content-Length)."""
        headers = dict(signed_headers)
        # Identity encoding keeps the body byte-identical to what DynamoDB
        # checksummed in x-amz-crc32 (httpx would otherwise ask for gzip and inflate it).
        headers["Accept-Encoding"] = "identity"
        try:
            request = self._client.build_request("POST", self.url, content=body, headers=headers)
            response = await self._client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ProxyError(504, "ServiceUnavailable", "DynamoDB did not answer in time") from None
        except httpx.HTTPError:
            raise ProxyError(502, "ServiceUnavailable", "DynamoDB is unreachable") from None
        forwarded = {
            name: response.headers[name]
            for name in FORWARDED_RESPONSE_HEADERS
            if name in response.headers
        }
        return UpstreamResponse(response.status_code, forwarded, raw)

    async def aclose(self) -> None:
        """Close all pooled connections."""
        await self._client.aclose()
