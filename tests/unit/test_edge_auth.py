from __future__ import annotations

import os

import jwt
import pytest

from edge.shared.auth import KeyRing, TokenVerifier
from tests.security import SigningKey, claims, unsigned, write_jwks

ISSUER, AUDIENCE = "https://issuer.test/", "api://ingot"


def test_keys_come_from_the_setting_and_a_file_that_is_reread(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# comment\nfile-key\n")
    ring = KeyRing("a, b", path)
    assert ring.accepts("a") and ring.accepts("file-key") and not ring.accepts("c") and not ring.accepts("")
    path.write_text("new-key\n")
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 2_000_000_000))
    assert ring.accepts("new-key") and not ring.accepts("file-key")


def test_a_vanished_key_file_revokes_its_keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text("k\n")
    ring = KeyRing("", path)
    path.unlink()
    assert not ring.accepts("k")


@pytest.fixture()
def verifier(tmp_path):
    signer = SigningKey.generate("k1")
    return signer, TokenVerifier(ISSUER, AUDIENCE, str(write_jwks(tmp_path / "jwks.json", signer)))


def test_a_good_token_verifies(verifier):
    signer, check = verifier
    assert check.verify(signer.sign(claims(ISSUER, AUDIENCE)))["sub"] == "test-user"


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "signature", "none", "hmac", "no-exp"])
def test_bad_tokens_are_refused(verifier, case):
    signer, check = verifier
    good = claims(ISSUER, AUDIENCE)
    token = {
        "expired": lambda: signer.sign(claims(ISSUER, AUDIENCE, lifetime=-3600)),
        "audience": lambda: signer.sign(claims(ISSUER, "api://other")),
        "issuer": lambda: signer.sign(claims("https://other.test/", AUDIENCE)),
        "signature": lambda: SigningKey.generate("k1").sign(good),
        "none": lambda: unsigned(good),
        # The public key as an HMAC secret: the classic algorithm confusion.
        "hmac": lambda: jwt.encode(good, b"not-the-key-but-any-secret-0123456789", algorithm="HS256",
                                   headers={"kid": "k1"}),
        "no-exp": lambda: signer.sign({k: v for k, v in good.items() if k != "exp"}),
    }[case]()
    with pytest.raises(jwt.PyJWTError):
        check.verify(token)


def test_keyless_auth_needs_issuer_audience_and_key_set():
    with pytest.raises(ValueError):
        TokenVerifier(ISSUER, "", "jwks.json")
