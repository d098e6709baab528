"""Bearer-token authentication: HS256 with a shared secret, RS256 with a JWKS.

Each algorithm is tied to its own key source and nothing in the token header
chooses a key except ``kid`` within the configured JWKS, so ``alg=none``,
HS256 tokens signed with a public RSA key (algorithm confusion) and
``jku``/``x5u``/embedded ``jwk`` headers all fail.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.types import Options

from ._errors import AuthError

_JWKS_CACHE_SECONDS = 300.0
_MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token subject and the scopes (partitions) it may use."""

    subject: str
    scopes: frozenset[str]
    expires_at: float


class TokenVerifier:
    """Verify bearer tokens and turn their claims into a :class:`Principal`.

    ``secret`` enables HS256; ``jwks`` (a JWKS document as a dict) or
    ``jwks_url`` enables RS256. ``audience`` and ``issuer``, when set, are
    required claims. Scopes come from the ``scopes`` claim (a list of strings);
    only those starting with one of ``scope_prefixes`` are kept, and
    ``u#<sub>`` is added when ``user_scope_from_sub`` is true (so plain OIDC
    tokens such as Cognito ID tokens give each user their private partition).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks: dict[str, Any] | None = None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 30.0,
        scope_prefixes: Sequence[str] = ("u#", "s#"),
        user_scope_from_sub: bool = True,
    ) -> None:
        if not (secret or jwks or jwks_url):
            raise ValueError("configure a JWT secret, a JWKS file or a JWKS URL")
        if secret is not None and len(secret.encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes (RFC 7518, HS256)")
        self._secret = secret
        self._jwks = jwt.PyJWKSet.from_dict(jwks) if jwks else None
        self._jwks_client = jwt.PyJWKClient(jwks_url) if jwks_url else None
        self._remote_keys: dict[str, tuple[jwt.PyJWK, float]] = {}
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._prefixes = tuple(scope_prefixes)
        self._user_scope = user_scope_from_sub
        required = ["exp", "sub"]
        if audience:
            required.append("aud")
        if issuer:
            required.append("iss")
        self._options: Options = {"require": required}
        # Verified tokens -> principal. A token's signature and claims never change,
        # so only its expiry needs re-checking; this saves the ~100 us of a full decode.
        self._verified: dict[str, Principal] = {}

    async def verify(self, authorization: str | None) -> Principal:
        """Check an ``Authorization`` header value; raise :class:`AuthError` if it fails."""
        if not authorization:
            raise AuthError("missing bearer token", "MissingAuthenticationTokenException")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("Authorization must be 'Bearer <token>'")
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() <= cached.expires_at + self._leeway:
                return cached
            del self._verified[token]
            raise AuthError("token expired", "ExpiredTokenException")
        principal = await self._decode(token)
        if len(self._verified) >= _MAX_CACHED_TOKENS:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    async def _decode(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._secret:
            key = self._secret
        elif alg == "RS256" and (self._jwks or self._jwks_client):
            key = await self._rsa_key(header.get("kid"))
        else:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", "ExpiredTokenException") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims["sub"]
        raw = claims.get("scopes", [])
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: sub must be a non-empty string")
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise AuthError("invalid token: scopes must be a list of strings")
        scopes = {s for s in raw if s.startswith(self._prefixes) and len(s) > 2}
        if self._user_scope:
            scopes.add(f"u#{sub}")
        return Principal(sub, frozenset(scopes), _expiry(claims["exp"]))

    async def _rsa_key(self, kid: Any) -> Any:
        if not isinstance(kid, str):
            raise AuthError("RS256 token without kid")
        if self._jwks is not None:
            try:
                return self._jwks[kid].key
            except KeyError:
                raise AuthError("token signed with an unknown key") from None
        assert self._jwks_client is not None
        cached = self._remote_keys.get(kid)
        now = time.monotonic()
        if cached and now - cached[1] < _JWKS_CACHE_SECONDS:
            return cached[0].key
        try:
            # PyJWKClient fetches with blocking urllib; keep it off the event loop.
            signing_key = await asyncio.to_thread(self._jwks_client.get_signing_key, kid)
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"token signed with an unknown key: {exc}") from None
        self._remote_keys[kid] = (signing_key, now)
        return signing_key.key


def _expiry(exp: Any) -> float:
    # PyJWT has checked that int(exp) works, which strings ("١٢") and integers too
    # large for a float pass as well: a NumericDate is a finite JSON number (RFC 7519).
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError("invalid token: exp must be a number")
    try:
        seconds = float(exp)
    except OverflowError:
        raise AuthError("invalid token: exp is out of range") from None
    if not math.isfinite(seconds):
        raise AuthError("invalid token: exp is out of range")
    return seconds


def issue_token(
    secret: str,
    user: str,
    *,
    scopes: Iterable[str] = (),
    ttl: int = 3600,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """Mint an HS256 token for local development: ``sub=user``, ``scopes=[u#user, *scopes]``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user,
        "scopes": list(dict.fromkeys([f"u#{user}", *scopes])),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
