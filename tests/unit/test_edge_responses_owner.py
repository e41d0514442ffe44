"""Whom a stored response belongs to: the key, however it is sent, or a token's issuer and subject."""

from __future__ import annotations

import jwt
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from edge.responses.adapter import owner
from edge.shared.auth import AUTHENTICATOR, Authenticator, KeyRing


def _request(headers: dict[str, str], keys: str = "k1,k2") -> web.Request:
    app = web.Application()
    app[AUTHENTICATOR] = Authenticator(KeyRing(keys, None), None)
    return make_mocked_request("GET", "/v1/responses/resp_1", headers=headers, app=app)


def _token(subject: str, expires: int) -> str:
    return jwt.encode({"iss": "https://issuer", "sub": subject, "exp": expires}, "secret-for-the-test-only-0123456789",
                      algorithm="HS256")


def test_a_key_owns_the_same_responses_as_api_key_header_or_bearer_and_keys_differ():
    as_header = owner(_request({"api-key": "k1"}))
    assert as_header == owner(_request({"Authorization": "Bearer k1"}))
    assert as_header != owner(_request({"api-key": "k2"})) and "k1" not in as_header


def test_a_renewed_token_keeps_its_subjects_responses():
    first = owner(_request({"Authorization": f"Bearer {_token('alice', 1_000)}"}))
    assert first == owner(_request({"Authorization": f"Bearer {_token('alice', 2_000)}"}))
    assert first != owner(_request({"Authorization": f"Bearer {_token('bob', 1_000)}"}))


def test_an_edge_without_auth_has_one_owner():
    assert owner(_request({"api-key": "anything"}, keys="")) == owner(_request({}, keys="")) == ""
