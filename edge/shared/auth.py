"""Who may call the edge: API keys, and keyless bearer tokens (Entra ID style JWTs).

With no key and no token issuer configured the edge is open, as a local server is. Otherwise every route but
/health, /ready and Databricks' host-metadata probe needs one of:

- an API key, as `api-key: KEY` (Azure) or `Authorization: Bearer KEY` (OpenAI); the azure-ai-inference SDK
  sends both. Keys come from INGOT_API_KEYS and from a key file that is re-read when it changes, so a key
  is added or revoked without a restart. Keys are compared in constant time.
- a JWT as `Authorization: Bearer TOKEN`, signed by a key of the configured JWKS (a file, re-read when it
  changes, or a URL, cached by PyJWT's client), with the configured issuer and audience, not expired. Only
  asymmetric algorithms are accepted, so neither `alg: none` nor an HMAC signed with the public key passes.

A failure is a 401 in the route's own error shape (the error middleware renders it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from edge.shared.settings import EdgeSettings
from ingot.common.errors import Unauthenticated

log = logging.getLogger(__name__)

# Probes (a kubelet, a load balancer) cannot send a key: liveness and readiness stay open. Neither does
# databricks-sdk, which reads its host metadata without a token each time a client is built.
OPEN_PATHS = frozenset({"/health", "/ready", "/.well-known/databricks-config"})
# Asymmetric only: the verifier holds public keys, and an HMAC "signed" with one would otherwise verify.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
# Clock skew tolerated between the token issuer and this host.
LEEWAY_S = 60


class KeyRing:
    """The API keys: fixed ones from the settings plus those of a file re-read when its mtime changes."""

    def __init__(self, keys: str, path: Path | None) -> None:
        self._fixed = [key.strip().encode() for key in keys.split(",") if key.strip()]
        self.path = path
        self._mtime: float | None = None
        self._from_file: list[bytes] = []
        if path is not None:
            self._reload()

    def _reload(self) -> None:
        assert self.path is not None
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            lines = self.path.read_text().splitlines()
        except OSError as exc:
            # A key file that vanished revokes its keys rather than keeping stale ones.
            log.error("API key file %s unreadable (%s); its keys are not accepted", self.path, exc)
            self._from_file, self._mtime = [], None
            return
        self._from_file = [line.strip().encode() for line in lines if line.strip() and not line.startswith("#")]
        self._mtime = mtime

    @property
    def configured(self) -> bool:
        return bool(self._fixed) or self.path is not None

    def accepts(self, key: str) -> bool:
        if self.path is not None:
            self._reload()
        candidate = key.encode()
        # Every key is compared, so the time taken says nothing about which one nearly matched.
        matched = False
        for known in (*self._fixed, *self._from_file):
            matched |= hmac.compare_digest(candidate, known)
        return matched


class TokenVerifier:
    """Checks JWTs against an issuer, an audience and a key set (JWKS file or URL)."""

    def __init__(self, issuer: str, audience: str, jwks: str) -> None:
        if not (issuer and audience and jwks):
            raise ValueError("keyless auth needs all of --jwt-issuer, --jwt-audience and --jwks")
        self.issuer = issuer
        self.audience = audience
        self._client = jwt.PyJWKClient(jwks, cache_keys=True) if jwks.startswith(("https://", "http://")) else None
        self._path = None if self._client else Path(jwks)
        self._mtime: float | None = None
        self._keys: jwt.PyJWKSet | None = None
        if self._path is not None:
            self._file_keys()

    def _file_keys(self) -> jwt.PyJWKSet:
        assert self._path is not None
        mtime = self._path.stat().st_mtime
        if self._keys is None or mtime != self._mtime:
            self._keys = jwt.PyJWKSet.from_dict(json.loads(self._path.read_text()))
            self._mtime = mtime
        return self._keys

    def _signing_key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._file_keys().keys
        matching = [key for key in keys if kid is None or key.key_id == kid]
        if not matching:
            raise jwt.InvalidTokenError(f"no key with kid {kid!r} in the key set")
        return matching[0].key

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises jwt.PyJWTError (or OSError reading the key set) when it does not verify."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError(f"the algorithm {header.get('alg')!r} is not accepted")
        return jwt.decode(token, self._signing_key(token), algorithms=ALGORITHMS, audience=self.audience,
                          issuer=self.issuer, leeway=LEEWAY_S, options={"require": ["exp", "iss", "aud"]})


def _bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2


class Authenticator:
    def __init__(self, keys: KeyRing, verifier: TokenVerifier | None) -> None:
        self.keys = keys
        self.verifier = verifier

    @classmethod
    def from_settings(cls, settings: EdgeSettings) -> Authenticator:
        verifier = None
        if settings.jwt_issuer or settings.jwt_audience or settings.jwks:
            try:
                verifier = TokenVerifier(settings.jwt_issuer, settings.jwt_audience, settings.jwks)
            except (ValueError, OSError, jwt.PyJWTError) as exc:
                # A misconfigured issuer must stop the edge, never leave it open or refusing everyone.
                raise SystemExit(f"invalid settings: {exc}") from None
        return cls(KeyRing(settings.api_keys, settings.api_key_file), verifier)

    @property
    def enabled(self) -> bool:
        return self.keys.configured or self.verifier is not None

    async def check(self, request: web.Request) -> None:
        api_key = request.headers.get("api-key", "").strip()
        bearer = _bearer(request)
        if api_key:
            if self.keys.accepts(api_key):
                return
            raise Unauthenticated("Incorrect API key provided in the api-key header.")
        if bearer is None:
            raise Unauthenticated("You didn't provide an API key. Send it as 'api-key: KEY' or "
                                  "'Authorization: Bearer KEY'" + (", or a bearer token." if self.verifier else "."))
        if self.keys.accepts(bearer):
            return
        if self.verifier is not None and _looks_like_jwt(bearer):
            try:
                # PyJWKClient may fetch the key set: off the event loop.
                await asyncio.to_thread(self.verifier.verify, bearer)
            except (jwt.PyJWTError, OSError, ValueError) as exc:
                raise Unauthenticated(f"The bearer token was rejected: {exc}.", code="invalid_token") from None
            return
        raise Unauthenticated("Incorrect API key provided.")


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)


@web.middleware
async def auth_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    authenticator = request.config_dict[AUTHENTICATOR]
    if authenticator.enabled and request.path not in OPEN_PATHS:
        await authenticator.check(request)
    return await handler(request)
