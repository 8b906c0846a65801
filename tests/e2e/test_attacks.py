"""Attacks through the real gateway: one table of crafted tokens and requests, sent through a
real Envoy (two workers) loading the built tollgate.wasm, in front of the echo upstream, with
keys from the real oidc-provider (``idp``, remote JWKS) and from the configuration (``lab`` and
``other``, inline JWKS holding keys of every type, including the odd ones an IdP never
publishes: a P-384 key for ES256 tokens, two keys under one kid, an encryption key...).

Each row of ``CASES`` is one request: a name, how its token is made (``harness.mint`` with jose
for most, Python for the bytes jose will not write), where it goes, and what must come back:
the exact status, the ``reason`` of the problem+json body (None when Envoy answers by itself),
and what the upstream saw (only allowed requests may reach it: checked against Envoy's access
log at the end). One gateway serves the whole table; after it, ``test_the_gateway_survived``
checks that no input made the filter panic or its VM fail, and that both workers still serve.

The rows follow SECURITY.md, "Tokens", "Claims" and "Headers and requests", and assert the
answer those rules and docs/configuration.md call for, not whatever the filter happens to say:
a row the filter gets wrong fails.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import pytest

import harness

AUD = "api://orders"
OPAQUE_AUD = "api://opaque"
LAB = "https://lab.tollgate.test"
OTHER = "https://other.tollgate.test"
INTROSPECTION = harness.Idp.INTROSPECTION_PATH
# Paths on the provider that a token's jku / x5u point at: a filter that fetched them would
# show up in the provider's request counts.
BAIT_JKU = "/attacker/jwks.json"
BAIT_X5U = "/attacker/cert.pem"
LAB_HMAC_SECRET = harness.b64url_encode(hashlib.sha256(b"tollgate lab hmac secret").digest())
LAB_SHORT_SECRET = harness.b64url_encode(b"sixteen byte key")
JWE = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn"  # five segments

# Every header the filter owns in this configuration: claim headers, the payload header and the
# policy header. Clients send them in three spellings each; none may reach the upstream as sent.
OWNED_HEADERS = ("x-user", "x-client", "x-roles", "x-plan", "x-department", "x-jwt-payload", "x-tier")
SPOOFED = tuple(
    (spelling, f"spoof-{n}")
    for header in OWNED_HEADERS
    for n, spelling in enumerate((header, header.upper(), header.title()))
)


# --------------------------------------------------------------------------------------------
# how a row says what it sends


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()  # a claim or header member to leave out / a header the upstream must not see
PAYLOAD = "<the token's payload segment>"  # the upstream's x-jwt-payload must be exactly that


@dataclasses.dataclass(frozen=True)
class Now:
    """A NumericDate relative to the time the token is minted."""

    offset: float = 0

    def value(self, now: int) -> Union[int, float]:
        v = now + self.offset
        return int(v) if float(v).is_integer() else v


# The signing keys of the table, by name (generated once per module, see ``keys``).
ISSUERS = {"idp": None, "lab": LAB, "other": OTHER}  # None: the provider's own issuer URL
DEFAULT_KEY = {"idp": "idp", "lab": "lab-rsa", "other": "other"}


@dataclasses.dataclass(frozen=True)
class Jwt:
    """A token minted by ``harness.mint``: claims and header of ``issuer``'s defaults with
    ``claims``/``header`` applied (``ABSENT`` removes a member), signed by ``key`` with ``alg``
    (the key's own by default). ``hmac``: ``"public-pem:<key>"`` (the public key's PEM as HMAC
    secret) or ``"lab"`` (the lab's inline secret). ``then(token, ctx)`` edits the result."""

    issuer: str = "idp"
    key: Optional[str] = None
    alg: Optional[str] = None
    header: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    claims: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    header_raw: Optional[str] = None
    payload_raw: Optional[str] = None
    hmac: Optional[str] = None
    then: Optional[Callable[[str, "Ctx"], str]] = None


@dataclasses.dataclass(frozen=True)
class Signed:
    """Header and payload given as raw bytes (anything, e.g. invalid UTF-8), signed here in
    Python with the ``idp`` key: RS256, or PS256 with ``salt_len``."""

    header: bytes
    payload: bytes
    salt_len: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Issued:
    """A token from the provider's token endpoint (JWT for api://orders, opaque otherwise)."""

    client: str = "orders-app"
    scope: Optional[str] = "orders:read"
    resource: str = AUD


@dataclasses.dataclass(frozen=True)
class Raw:
    text: str


TokenSpec = Union[Jwt, Signed, Issued, Raw, None]


@dataclasses.dataclass(frozen=True)
class Case:
    """One request of the table and its expected answer.

    ``place``: where ``token`` goes (``bearer``, ``cookie``, ``query``, ``x-other-token``, or
    None when ``headers`` place it themselves with ``{token}`` / ``{token2}``). ``upstream``:
    headers the upstream must see (a value, ``PAYLOAD``, or ``ABSENT``). ``idp_delta``:
    provider paths whose request count must grow by exactly that much during this request."""

    name: str
    token: TokenSpec
    status: int
    reason: Optional[str]
    path: str = "/orders"
    method: str = "GET"
    place: Optional[str] = "bearer"
    headers: Sequence[tuple[str, str]] = ()
    token2: TokenSpec = None
    upstream: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    idp_delta: Mapping[str, int] = dataclasses.field(default_factory=dict)
    marks: Sequence[Any] = ()


# --------------------------------------------------------------------------------------------
# byte-level edits of tokens

P256_N = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
P384_N = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
)
P521_N = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA5186"
    "8783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16
)
CURVE_ORDER = {64: P256_N, 96: P384_N, 132: P521_N}
ED25519_L = 2**252 + 27742317777372353535851937790883648493
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def parts(token: str) -> list[str]:
    return token.split(".")


def with_signature(edit: Callable[[bytes, "Ctx"], bytes]) -> Callable[[str, "Ctx"], str]:
    """Replaces the signature by ``edit(signature bytes, ctx)``."""

    def then(token: str, ctx: "Ctx") -> str:
        h, p, s = parts(token)
        return f"{h}.{p}.{harness.b64url_encode(edit(harness.b64url_decode(s), ctx))}"

    return then


def ecdsa(r: str = "r", s: str = "s") -> Callable[[str, "Ctx"], str]:
    """An ECDSA signature ``r || s`` rebuilt from expressions of the original r, s and the
    curve order n: "0", "n", "n+1", "max" (all ones), "n-s"."""

    def edit(sig: bytes, _ctx: "Ctx") -> bytes:
        half = len(sig) // 2
        n = CURVE_ORDER[len(sig)]
        values = {"r": int.from_bytes(sig[:half], "big"), "s": int.from_bytes(sig[half:], "big"), "n": n}
        values["max"] = 2 ** (8 * half) - 1

        def value(expr: str) -> int:
            if expr == "n+1":
                return n + 1
            if expr == "n-s":
                return n - values["s"]
            return int(expr) if expr.isdigit() else values[expr]

        return value(r).to_bytes(half, "big") + value(s).to_bytes(half, "big")

    return with_signature(edit)


def der(sig: bytes, _ctx: "Ctx") -> bytes:
    """The same ECDSA signature as an ASN.1 DER SEQUENCE (the X.509 form, not JWS)."""

    def integer(b: bytes) -> bytes:
        b = b.lstrip(b"\0") or b"\0"
        if b[0] & 0x80:
            b = b"\0" + b
        return bytes([0x02, len(b)]) + b

    half = len(sig) // 2
    body = integer(sig[:half]) + integer(sig[half:])
    return bytes([0x30, len(body)]) + body


def rsa_value(expr: str) -> Callable[[str, "Ctx"], str]:
    """An RSA signature whose value is "0", "1", "n-1", "n", "n+1" or "max", modulus-length."""

    def edit(sig: bytes, ctx: "Ctx") -> bytes:
        n = int.from_bytes(harness.b64url_decode(ctx.keys["idp"]["n"]), "big")
        k = (n.bit_length() + 7) // 8
        value = {"0": 0, "1": 1, "n-1": n - 1, "n": n, "n+1": n + 1, "max": 2 ** (8 * k) - 1}[expr]
        return value.to_bytes(k, "big")

    return with_signature(edit)


def ed25519_s_plus_l(sig: bytes, _ctx: "Ctx") -> bytes:
    """S + L: the same signature scalar, non-canonically encoded (S >= L)."""
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    return sig[:32] + s.to_bytes(32, "little")


def append(text: str) -> Callable[[str, "Ctx"], str]:
    return lambda token, _ctx: token + text


def segment(index: int, edit: Callable[[str], str]) -> Callable[[str, "Ctx"], str]:
    def then(token: str, _ctx: "Ctx") -> str:
        segs = parts(token)
        segs[index] = edit(segs[index])
        return ".".join(segs)

    return then


def trailing_bits(seg: str) -> str:
    """The same bytes with a non-zero unused trailing bit (a second encoding of them)."""
    rest = len(seg) % 4
    assert rest in (2, 3), f"segment of length {len(seg)} has no unused bits"
    last = B64URL.index(seg[-1])
    assert last & 1 == 0
    return seg[:-1] + B64URL[last | 1]


def std_alphabet(seg: str) -> str:
    """The same bytes in the standard base64 alphabet (+ and /), unpadded."""
    out = seg.replace("-", "+").replace("_", "/")
    assert out != seg, "no - or _ in this segment"
    return out


def wrong_alg(alg: str) -> Callable[[str, "Ctx"], str]:
    """Rewrites the header's ``alg`` after signing (the signature stays the original's)."""

    def then(token: str, _ctx: "Ctx") -> str:
        h, p, s = parts(token)
        header = json.loads(harness.b64url_decode(h))
        header["alg"] = alg
        return f"{harness.b64url_encode(json.dumps(header).encode())}.{p}.{s}"

    return then


def tamper_payload(**changes: Any) -> Callable[[str, "Ctx"], str]:
    """Changes claims after signing: the signature no longer holds."""

    def then(token: str, _ctx: "Ctx") -> str:
        h, p, s = parts(token)
        claims = json.loads(harness.b64url_decode(p))
        claims.update(changes)
        return f"{h}.{harness.b64url_encode(json.dumps(claims).encode())}.{s}"

    return then


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# --------------------------------------------------------------------------------------------
# RSA signing in Python, for bytes jose will not sign (invalid UTF-8) and PSS salt lengths it
# will not use. Textbook RSA with the private exponent: slow, and only for a few rows.

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _rsa_private(jwk: Mapping[str, str], em: bytes) -> bytes:
    n = int.from_bytes(harness.b64url_decode(jwk["n"]), "big")
    d = int.from_bytes(harness.b64url_decode(jwk["d"]), "big")
    k = (n.bit_length() + 7) // 8
    return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")


def rs256_sign(jwk: Mapping[str, str], data: bytes) -> bytes:
    k = (int.from_bytes(harness.b64url_decode(jwk["n"]), "big").bit_length() + 7) // 8
    t = SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
    return _rsa_private(jwk, b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t)


def ps256_sign(jwk: Mapping[str, str], data: bytes, salt_len: int) -> bytes:
    """RSASSA-PSS (RFC 8017 section 9.1.1) with SHA-256 and MGF1-SHA-256, any salt length."""
    n = int.from_bytes(harness.b64url_decode(jwk["n"]), "big")
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    m_hash = hashlib.sha256(data).digest()
    salt = os.urandom(salt_len)
    h = hashlib.sha256(b"\0" * 8 + m_hash + salt).digest()
    db = b"\0" * (em_len - salt_len - 32 - 2) + b"\x01" + salt
    mask = b"".join(hashlib.sha256(h + i.to_bytes(4, "big")).digest() for i in range((len(db) + 31) // 32))
    masked = bytearray(a ^ b for a, b in zip(db, mask))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    return _rsa_private(jwk, bytes(masked) + h + b"\xbc")


# --------------------------------------------------------------------------------------------
# the table

IDP_TYP = {"typ": "at+jwt"}
now = Now  # rows read better as claims={"exp": now(-90)}


def lab(key: str, alg: Optional[str] = None, **kw: Any) -> Jwt:
    return Jwt(issuer="lab", key=key, alg=alg, **kw)


def attacker(**kw: Any) -> Jwt:
    return Jwt(key="attacker", **kw)


def spoofing(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return SPOOFED + tuple(extra)


# Routes: /lab accepts only the lab and other providers, none of which introspects, so a token
# that is not a compact JWS meets the JWS parser there; /orders has the provider that
# introspects.
LAB_ROUTE = "/lab/x"


ALL_OWNED_ABSENT = {h: ABSENT for h in OWNED_HEADERS}
CRAFTED_IDENTITY = {  # a crafted idp token has no roles, tenant or department claims
    "x-user": "crafted-user", "x-client": "orders-app", "x-roles": ABSENT, "x-plan": ABSENT,
    "x-department": ABSENT, "x-tier": ABSENT, "x-jwt-payload": PAYLOAD,
}

TOKENS = [
    # --- controls: what is accepted, so that every refusal below is about its one change ----
    Case("control: token issued by the provider", Issued(), 200, None, upstream={
        "x-user": "orders-app", "x-client": "orders-app", "x-roles": "admin,buyer", "x-plan": "gold",
        "x-department": "sales", "x-tier": "gold", "x-jwt-payload": PAYLOAD}),
    Case("control: crafted with the provider's key", Jwt(), 200, None, upstream=CRAFTED_IDENTITY),
    Case("control: lab RS256", lab("lab-rsa", "RS256"), 200, None, upstream={"x-user": "lab-user"}),
    Case("control: lab PS256", lab("lab-rsa", "PS256"), 200, None),
    Case("control: lab ES256 (P-256)", lab("lab-p256"), 200, None),
    Case("control: lab ES384 (P-384)", lab("lab-p384"), 200, None),
    Case("control: lab ES512 (P-521)", lab("lab-p521"), 200, None),
    Case("control: lab EdDSA (Ed25519)", lab("lab-ed"), 200, None),
    Case("control: lab HS256 with the inline secret", lab("lab-hs", "HS256", hmac="lab"), 200, None),
    Case("control: other issuer, in its own header", Jwt(issuer="other"), 200, None, place="x-other-token"),
    # --- alg none, empty signature, unsigned ------------------------------------------------
    Case("alg none, empty signature", Jwt(alg="none", key=None), 401, "alg_none"),
    Case("alg None (case)", Jwt(alg="none", key=None, header={"alg": "None"}), 401, "alg_none"),
    Case("alg nOnE (case)", Jwt(alg="none", key=None, header={"alg": "nOnE"}), 401, "alg_none"),
    Case("alg none with a signature", Jwt(header={"alg": "none"}), 401, "alg_none"),
    Case("RS256 with an empty signature", Jwt(then=segment(2, lambda s: "")), 401, "malformed_token"),
    Case("unsigned: two segments", Jwt(then=lambda t, c: ".".join(parts(t)[:2])), 401, "malformed_token",
         path=LAB_ROUTE),
    # Not two or four dots: an opaque token (they may hold dots), so the route's introspecting
    # provider is asked, and says it is not active.
    Case("unsigned: two segments, on a route that introspects", Jwt(then=lambda t, c: ".".join(parts(t)[:2])), 401,
         "token_inactive", idp_delta={INTROSPECTION: 1}),
    Case("no alg", Jwt(header_raw='{"typ":"at+jwt","kid":"e2e-1"}'), 401, "malformed_token"),
    Case("alg not a string", Jwt(header={"alg": ["RS256"]}), 401, "malformed_token"),
    Case("alg rs256 (lower case)", Jwt(header={"alg": "rs256"}), 401, "unsupported_algorithm"),
    Case("alg unknown (RS1)", Jwt(header={"alg": "RS1"}), 401, "unsupported_algorithm"),
    # --- algorithm confusion ------------------------------------------------------------------
    Case("HS256 signed with the provider's public key PEM", Jwt(alg="HS256", hmac="public-pem:idp"), 401,
         "algorithm_not_allowed"),
    Case("HS384 signed with the provider's public key PEM", Jwt(alg="HS384", hmac="public-pem:idp"), 401,
         "algorithm_not_allowed"),
    Case("HS512 signed with the provider's public key PEM", Jwt(alg="HS512", hmac="public-pem:idp"), 401,
         "algorithm_not_allowed"),
    Case("HS256 with an RSA key's kid where HS256 is allowed",
         lab("lab-rsa", "HS256", hmac="public-pem:lab-rsa"), 401, "key_mismatch"),
    Case("HS256 with the oct key's kid, signed with an RSA PEM",
         lab("lab-hs", "HS256", hmac="public-pem:lab-rsa"), 401, "bad_signature"),
    Case("PS256 with a key published as alg RS256", Jwt(alg="PS256"), 401, "key_mismatch"),
    Case("PS256 with the lab key published as alg RS256", lab("lab-rsa", "PS256", header={"kid": "lab-rsa-rs256"}),
         401, "key_mismatch"),
    Case("ES256 claimed, P-384 key under the kid", lab("lab-p384", header={"alg": "ES256"}), 401, "key_mismatch"),
    Case("ES384 claimed, P-256 key under the kid", lab("lab-p256", header={"alg": "ES384"}), 401, "key_mismatch"),
    Case("ES512 claimed, P-384 key under the kid", lab("lab-p384", header={"alg": "ES512"}), 401, "key_mismatch"),
    Case("EdDSA claimed, RSA key under the kid", lab("lab-ed", header={"kid": "lab-rsa"}), 401, "key_mismatch"),
    Case("RS256 claimed, EC key under the kid", lab("lab-rsa", header={"kid": "lab-p256"}), 401, "key_mismatch"),
    Case("ES256 claimed, RSA key under the kid", Jwt(then=wrong_alg("ES256")), 401, "key_mismatch"),
    Case("key with use enc", lab("lab-enc"), 401, "unknown_kid"),
    Case("key whose key_ops lacks verify", lab("lab-ops"), 401, "unknown_kid"),
    Case("RSA key of 1024 bits", lab("lab-weak"), 401, "unknown_kid"),
    Case("RSA key with public exponent 1", lab("lab-rsa", header={"kid": "lab-e1"}), 401, "unknown_kid"),
    Case("EC key whose point is not on the curve", lab("lab-p256", header={"kid": "lab-off-curve"}), 401,
         "unknown_kid"),
    Case("HMAC secret of 16 bytes", lab("lab-hs", "HS256", hmac="short", header={"kid": "lab-hs-short"}), 401,
         "unknown_kid"),
    Case("HS384 with a 32-byte secret (shorter than its output)", lab("lab-hs", "HS384", hmac="lab"), 401,
         "key_mismatch"),
    Case("no kid, several keys fit", lab("lab-rsa", header={"kid": ABSENT}), 401, "kid_required"),
    Case("no kid, the provider's only key", Jwt(header={"kid": ABSENT}), 200, None),
    Case("HS256 without kid, signed with an RSA PEM", lab("lab-hs", "HS256", hmac="public-pem:lab-rsa",
                                                          header={"kid": ABSENT}), 401, "bad_signature"),
    # --- keys offered by the token itself -------------------------------------------------------
    Case("jwk header with the attacker's key", attacker(header={"kid": "e2e-1", "jwk": "<attacker>"}), 401,
         "bad_signature"),
    Case("jwk header, no kid", attacker(header={"kid": ABSENT, "jwk": "<attacker>"}), 401, "bad_signature"),
    Case("jku header to the attacker's JWKS", attacker(header={"kid": "e2e-1", "jku": "<bait-jku>"}), 401,
         "bad_signature", idp_delta={BAIT_JKU: 0}),
    Case("jku header, the attacker's kid", attacker(header={"jku": "<bait-jku>"}), 401, "unknown_kid",
         idp_delta={BAIT_JKU: 0}),
    Case("x5u header", attacker(header={"kid": "e2e-1", "x5u": "<bait-x5u>"}), 401, "bad_signature",
         idp_delta={BAIT_X5U: 0}),
    Case("x5c header", attacker(header={"kid": "e2e-1", "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
         401, "bad_signature"),
    Case("valid token carrying jwk/jku/x5u headers: they are ignored",
         Jwt(header={"jwk": "<attacker>", "jku": "<bait-jku>", "x5u": "<bait-x5u>"}), 200, None,
         idp_delta={BAIT_JKU: 0, BAIT_X5U: 0}),
    # --- kid ----------------------------------------------------------------------------------
    Case("kid of 10 KB", Jwt(header={"kid": "k" * 10240}), 401, "malformed_token"),
    Case("kid of 257 bytes", Jwt(header={"kid": "k" * 257}), 401, "malformed_token"),
    Case("kid of 256 bytes, unknown", Jwt(header={"kid": "k" * 256}), 401, "unknown_kid"),
    Case("kid empty", Jwt(header={"kid": ""}), 401, "malformed_token"),
    Case("kid a number", Jwt(header={"kid": 1}), 401, "malformed_token"),
    Case("kid null", Jwt(header={"kid": None}), 401, "malformed_token"),
    Case("kid in another case", Jwt(header={"kid": "E2E-1"}), 401, "unknown_kid"),
    Case("kid with a NUL", Jwt(header={"kid": "e2e-1\u0000"}), 401, "unknown_kid"),
    Case("kid as a path", Jwt(header={"kid": "../../jwks"}), 401, "unknown_kid"),
    Case("two keys under one kid", lab("lab-dup-a", header={"kid": "lab-dup"}), 401, "ambiguous_kid"),
    Case("two keys under one kid, the other one", lab("lab-dup-b", header={"kid": "lab-dup"}), 401, "ambiguous_kid"),
    # --- ECDSA ----------------------------------------------------------------------------------
    Case("ES256 DER signature", lab("lab-p256", then=with_signature(der)), 401, "bad_signature"),
    Case("ES384 DER signature", lab("lab-p384", then=with_signature(der)), 401, "bad_signature"),
    Case("ES256 r = s = 0 (psychic signature)", lab("lab-p256", then=ecdsa("0", "0")), 401, "bad_signature"),
    Case("ES384 r = s = 0", lab("lab-p384", then=ecdsa("0", "0")), 401, "bad_signature"),
    Case("ES512 r = s = 0", lab("lab-p521", then=ecdsa("0", "0")), 401, "bad_signature"),
    Case("ES256 r = 0", lab("lab-p256", then=ecdsa("0", "s")), 401, "bad_signature"),
    Case("ES256 s = 0", lab("lab-p256", then=ecdsa("r", "0")), 401, "bad_signature"),
    Case("ES256 r = n", lab("lab-p256", then=ecdsa("n", "s")), 401, "bad_signature"),
    Case("ES256 s = n", lab("lab-p256", then=ecdsa("r", "n")), 401, "bad_signature"),
    Case("ES256 r = n + 1", lab("lab-p256", then=ecdsa("n+1", "s")), 401, "bad_signature"),
    Case("ES256 r = s = 2^256 - 1", lab("lab-p256", then=ecdsa("max", "max")), 401, "bad_signature"),
    Case("ES384 s = n", lab("lab-p384", then=ecdsa("r", "n")), 401, "bad_signature"),
    Case("ES256 signature of 63 bytes", lab("lab-p256", then=with_signature(lambda s, c: s[:63])), 401,
         "bad_signature"),
    Case("ES256 signature of 65 bytes", lab("lab-p256", then=with_signature(lambda s, c: b"\0" + s)), 401,
         "bad_signature"),
    Case("ES256 high-S: accepted (RFC 7518 does not require low-S)", lab("lab-p256", then=ecdsa("r", "n-s")), 200,
         None),
    # --- RSA ------------------------------------------------------------------------------------
    Case("RSA signature 0", Jwt(then=rsa_value("0")), 401, "bad_signature"),
    Case("RSA signature 1", Jwt(then=rsa_value("1")), 401, "bad_signature"),
    Case("RSA signature n-1", Jwt(then=rsa_value("n-1")), 401, "bad_signature"),
    Case("RSA signature n", Jwt(then=rsa_value("n")), 401, "bad_signature"),
    Case("RSA signature n+1", Jwt(then=rsa_value("n+1")), 401, "bad_signature"),
    Case("RSA signature all ones", Jwt(then=rsa_value("max")), 401, "bad_signature"),
    Case("RSA signature with a leading zero byte (257 bytes)", Jwt(then=with_signature(lambda s, c: b"\0" + s)),
         401, "bad_signature"),
    Case("RSA signature missing its last byte (255 bytes)", Jwt(then=with_signature(lambda s, c: s[:-1])), 401,
         "bad_signature"),
    Case("RSA signature twice (512 bytes)", Jwt(then=with_signature(lambda s, c: s + s)), 401, "bad_signature"),
    Case("PS256 with a 32-byte salt (control)",
         Signed(b'{"alg":"PS256","kid":"lab-rsa"}', b"<lab-claims>", salt_len=32), 200, None),
    Case("PS256 with an empty salt", Signed(b'{"alg":"PS256","kid":"lab-rsa"}', b"<lab-claims>", salt_len=0), 401,
         "bad_signature"),
    Case("PS256 with a 20-byte salt", Signed(b'{"alg":"PS256","kid":"lab-rsa"}', b"<lab-claims>", salt_len=20), 401,
         "bad_signature"),
    # --- Ed25519 --------------------------------------------------------------------------------
    Case("Ed25519 S + L (S >= L)", lab("lab-ed", then=with_signature(ed25519_s_plus_l)), 401, "bad_signature"),
    Case("Ed25519 signature of 63 bytes", lab("lab-ed", then=with_signature(lambda s, c: s[:63])), 401,
         "bad_signature"),
    Case("Ed25519 signature of 65 bytes", lab("lab-ed", then=with_signature(lambda s, c: s + b"\0")), 401,
         "bad_signature"),
    Case("Ed25519 all-zero signature", lab("lab-ed", then=with_signature(lambda s, c: b"\0" * 64)), 401,
         "bad_signature"),
    # --- HMAC -----------------------------------------------------------------------------------
    Case("HS256 tag truncated to 16 bytes", lab("lab-hs", "HS256", hmac="lab", then=with_signature(lambda s, c: s[:16])),
         401, "bad_signature"),
    Case("HS256 tag truncated to 31 bytes", lab("lab-hs", "HS256", hmac="lab", then=with_signature(lambda s, c: s[:31])),
         401, "bad_signature"),
    Case("HS256 tag of 1 byte", lab("lab-hs", "HS256", hmac="lab", then=with_signature(lambda s, c: s[:1])), 401,
         "bad_signature"),
    Case("HS256 tag with a byte more", lab("lab-hs", "HS256", hmac="lab", then=with_signature(lambda s, c: s + b"\0")),
         401, "bad_signature"),
    # --- serialization --------------------------------------------------------------------------
    Case("four segments", Jwt(then=append(".e30")), 401, "malformed_token", path=LAB_ROUTE),
    Case("four segments, the last empty", Jwt(then=append(".")), 401, "malformed_token", path=LAB_ROUTE),
    Case("five segments (JWE)", Raw(JWE), 401, "malformed_token", path=LAB_ROUTE),
    Case("four segments, on a route that introspects", Jwt(then=append(".e30")), 401, "token_inactive",
         idp_delta={INTROSPECTION: 1}),
    Case("five segments (JWE), on a route that introspects", Raw(JWE), 401, "malformed_token",
         idp_delta={INTROSPECTION: 0}),
    Case("enc in the header (JWE)", Jwt(header={"enc": "A256GCM"}), 401, "malformed_token"),
    Case("crit", Jwt(header={"crit": ["exp"]}), 401, "malformed_token"),
    Case("crit empty", Jwt(header={"crit": []}), 401, "malformed_token"),
    Case("b64 false", Jwt(header={"b64": False, "crit": ["b64"]}), 401, "malformed_token"),
    Case("b64 false without crit", Jwt(header={"b64": False}), 401, "malformed_token"),
    Case("cty JWT (nested token)", Jwt(header={"cty": "JWT"}), 401, "malformed_token"),
    Case("cty application/jwt", Jwt(header={"cty": "application/jwt"}), 401, "malformed_token"),
    Case("empty header segment", Jwt(then=segment(0, lambda s: "")), 401, "malformed_token"),
    Case("empty payload segment", Jwt(then=segment(1, lambda s: "")), 401, "malformed_token"),
    Case("padding on the header", Jwt(then=segment(0, lambda s: s + "=" * (-len(s) % 4 or 4))), 401,
         "malformed_token"),
    Case("padding on the signature", Jwt(then=segment(2, lambda s: s + "==")), 401, "malformed_token"),
    Case("a space inside the signature", Jwt(then=segment(2, lambda s: s[:10] + " " + s[10:])), 401,
         "malformed_token"),
    Case("a tab inside the signature", Jwt(then=segment(2, lambda s: s[:10] + "\t" + s[10:])), 401,
         "malformed_token"),
    Case("standard base64 alphabet in the signature", Jwt(then=segment(2, std_alphabet)), 401, "malformed_token"),
    Case("non-zero trailing bits in the signature", Jwt(then=segment(2, trailing_bits)), 401, "malformed_token"),
    Case("non-zero trailing bits in the header", Jwt(then=segment(0, trailing_bits)), 401, "malformed_token"),
    Case("non-base64url character in the payload", Jwt(then=segment(1, lambda s: s[:5] + "*" + s[6:])), 401,
         "malformed_token"),
    Case("JSON serialization (refused before any IdP sees it)", Raw('{"payload":"e30","protected":'
         '"eyJhbGciOiJSUzI1NiJ9","signature":"c2ln"}'), 401, "malformed_token", idp_delta={INTROSPECTION: 0}),
    # --- JSON -----------------------------------------------------------------------------------
    Case("payload an array", Jwt(payload_raw='["sub","admin"]'), 401, "malformed_token"),
    Case("payload a string", Jwt(payload_raw='"admin"'), 401, "malformed_token"),
    Case("header an array", Jwt(header_raw='["RS256"]'), 401, "malformed_token"),
    Case("duplicate sub in the payload", Jwt(payload_raw="<claims-with-duplicate-sub>"), 401, "malformed_token"),
    Case("duplicate member in a nested claim", Jwt(payload_raw="<claims-with-duplicate-plan>"), 401,
         "malformed_token"),
    Case("duplicate alg in the header", Jwt(header_raw='{"alg":"RS256","typ":"at+jwt","kid":"e2e-1","alg":"none"}'),
         401, "malformed_token"),
    Case("payload with invalid UTF-8 (signed)", Signed(b'{"alg":"RS256","typ":"at+jwt","kid":"e2e-1"}',
                                                       b"<idp-claims-invalid-utf8>"), 401, "malformed_token"),
    Case("header with invalid UTF-8 (signed)", Signed(b'{"alg":"RS256","typ":"at+jwt","kid":"e2e-1","x":"\xff"}',
                                                      b"<idp-claims>"), 401, "malformed_token"),
    Case("payload with a lone surrogate escape", Jwt(payload_raw="<claims-with-lone-surrogate>"), 401,
         "malformed_token"),
    Case("payload nested 100 deep", Jwt(payload_raw="<claims-nested-100>"), 401, "malformed_token"),
    Case("payload nested 17 deep", Jwt(payload_raw="<claims-nested-17>"), 401, "malformed_token"),
    Case("payload with trailing data", Jwt(payload_raw="<claims> x"), 401, "malformed_token"),
    Case("payload with a byte order mark", Jwt(payload_raw="\ufeff<claims>"), 401, "malformed_token"),
    Case("a number out of range (1e400)", Jwt(payload_raw="<claims-exp-1e400>"), 401, "malformed_token"),
    # --- size -----------------------------------------------------------------------------------
    Case("token of 20 KB", Jwt(claims={"pad": "x" * 20000}), 401, "token_too_large"),
    Case("token of 1 MB", Jwt(claims={"pad": "x" * (1 << 20)}), 401, "token_too_large"),
    Case("16,000 dots", Raw("." * 16000), 401, "malformed_token", path=LAB_ROUTE),
    Case("a. x 8,000", Raw("a." * 8000), 401, "malformed_token", path=LAB_ROUTE),
    Case("20,000 dots", Raw("." * 20000), 401, "token_too_large", path=LAB_ROUTE),
    Case("1 MB of dots", Raw("." * (1 << 20)), 401, "token_too_large", path=LAB_ROUTE),
    Case("16,000 dots, on a route that introspects", Raw("." * 16000), 401, "token_inactive",
         idp_delta={INTROSPECTION: 1}),
    # Over the 16 KiB cap, whatever the route: the cap comes before anything else reads the token.
    Case("20,000 dots, on a route that introspects", Raw("." * 20000), 401, "token_too_large",
         idp_delta={INTROSPECTION: 0}),
    Case("1 MB of dots, on a route that introspects", Raw("." * (1 << 20)), 401, "token_too_large",
         idp_delta={INTROSPECTION: 0}),
    Case("opaque token of 20 KB: refused before introspection", Raw("o" * 20000), 401, "token_too_large",
         idp_delta={INTROSPECTION: 0}),
    Case("opaque token of 1 MB: refused before introspection", Raw("o" * (1 << 20)), 401, "token_too_large",
         idp_delta={INTROSPECTION: 0}),
]

CLAIMS = [
    # --- time -----------------------------------------------------------------------------------
    Case("exp == now (skew 0)", lab("lab-rsa", claims={"exp": now(0), "iat": now(-60)}), 401, "token_expired"),
    Case("exp 30 s ahead (skew 0)", lab("lab-rsa", claims={"exp": now(30)}), 200, None),
    Case("exp 30 s ago, within the 60 s skew", Jwt(claims={"exp": now(-30), "iat": now(-300)}), 200, None),
    Case("exp 90 s ago, beyond the 60 s skew", Jwt(claims={"exp": now(-90), "iat": now(-300)}), 401,
         "token_expired"),
    Case("exp missing", Jwt(claims={"exp": ABSENT}), 401, "missing_exp"),
    Case("exp as a string", Jwt(claims={"exp": "9999999999"}), 401, "invalid_claim"),
    Case("exp null", Jwt(claims={"exp": None}), 401, "invalid_claim"),
    Case("exp negative", Jwt(claims={"exp": -1}), 401, "invalid_claim"),
    Case("exp 1e300", Jwt(claims={"exp": 1e300}), 401, "invalid_claim"),
    Case("exp beyond 10^11", Jwt(claims={"exp": 10**11 + 1}), 401, "invalid_claim"),
    Case("exp true", Jwt(claims={"exp": True}), 401, "invalid_claim"),
    Case("exp in an array", Jwt(claims={"exp": [now(300)]}), 401, "invalid_claim"),
    Case("exp with a fraction", Jwt(claims={"exp": now(300.5)}), 200, None),
    Case("nbf 30 s ahead, within the skew", Jwt(claims={"nbf": now(30)}), 200, None),
    Case("nbf 90 s ahead", Jwt(claims={"nbf": now(90)}), 401, "token_not_yet_valid"),
    Case("nbf as a string", Jwt(claims={"nbf": "0"}), 401, "invalid_claim"),
    Case("nbf null", Jwt(claims={"nbf": None}), 401, "invalid_claim"),
    Case("iat 30 s ahead, within the skew", Jwt(claims={"iat": now(30)}), 200, None),
    Case("iat 90 s ahead", Jwt(claims={"iat": now(90)}), 401, "token_issued_in_future"),
    Case("iat negative", Jwt(claims={"iat": -5}), 401, "invalid_claim"),
    Case("iat as a string", Jwt(claims={"iat": "now"}), 401, "invalid_claim"),
    Case("lifetime 3600 s, the maximum", lab("lab-rsa", claims={"iat": now(0), "exp": now(3600)}), 200, None),
    Case("lifetime 3601 s, over the maximum", lab("lab-rsa", claims={"iat": now(0), "exp": now(3601)}), 401,
         "token_lifetime_too_long"),
    Case("no iat where a maximum lifetime is set", lab("lab-rsa", claims={"iat": ABSENT}), 401, "invalid_claim"),
    # --- issuer, and keys bound to their issuer ---------------------------------------------
    Case("iss of another issuer, signed with the provider's key", Jwt(claims={"iss": OTHER}), 401, "unknown_kid",
         place="x-other-token"),
    Case("iss of another issuer, its kid, the provider's key", Jwt(claims={"iss": OTHER}, header={"kid": "other-1"}),
         401, "bad_signature", place="x-other-token"),
    Case("iss of another issuer, no kid, the provider's key", Jwt(claims={"iss": OTHER}, header={"kid": ABSENT}),
         401, "bad_signature", place="x-other-token"),
    Case("iss of the provider, signed with the other issuer's key", Jwt(key="other", header={"kid": "other-1"}),
         401, "unknown_kid"),
    Case("iss of the provider, the lab's key and kid", Jwt(key="lab-rsa", header={"kid": "lab-rsa"}), 401,
         "unknown_kid"),
    Case("iss of the lab, the provider's key and kid", lab("idp", header={"kid": "e2e-1"}), 401, "unknown_kid"),
    Case("unknown issuer", Jwt(claims={"iss": "https://evil.example"}), 401, "unknown_issuer"),
    Case("no iss", Jwt(claims={"iss": ABSENT}), 401, "unknown_issuer"),
    Case("iss a number", Jwt(claims={"iss": 42}), 401, "unknown_issuer"),
    Case("iss in an array", Jwt(claims={"iss": ["<idp-issuer>"]}), 401, "unknown_issuer"),
    Case("iss with a trailing slash", Jwt(claims={"iss": "<idp-issuer>/"}), 401, "unknown_issuer"),
    Case("iss in upper case", Jwt(claims={"iss": "<IDP-ISSUER>"}), 401, "unknown_issuer"),
    Case("unknown issuer on an anonymous route: passes, anonymously", Jwt(claims={"iss": "https://evil.example"}),
         200, None, path="/health", upstream=ALL_OWNED_ABSENT),
    # --- audience -------------------------------------------------------------------------------
    Case("aud an empty array", Jwt(claims={"aud": []}), 401, "invalid_claim"),
    Case("aud holds a number", Jwt(claims={"aud": [123]}), 401, "invalid_claim"),
    Case("aud holds a number beside the right one", Jwt(claims={"aud": [AUD, 1]}), 401, "invalid_claim"),
    Case("aud a number", Jwt(claims={"aud": 123}), 401, "invalid_claim"),
    Case("aud null", Jwt(claims={"aud": None}), 401, "invalid_claim"),
    Case("aud an object", Jwt(claims={"aud": {"aud": AUD}}), 401, "invalid_claim"),
    Case("aud missing", Jwt(claims={"aud": ABSENT}), 401, "wrong_audience"),
    Case("aud empty string", Jwt(claims={"aud": ""}), 401, "wrong_audience"),
    Case("aud with a trailing slash", Jwt(claims={"aud": AUD + "/"}), 401, "wrong_audience"),
    Case("aud in upper case", Jwt(claims={"aud": AUD.upper()}), 401, "wrong_audience"),
    Case("aud with a trailing space", Jwt(claims={"aud": AUD + " "}), 401, "wrong_audience"),
    Case("aud a prefix", Jwt(claims={"aud": AUD[:-1]}), 401, "wrong_audience"),
    Case("aud an array holding the right one", Jwt(claims={"aud": ["api://billing", AUD]}), 200, None),
    # --- typ ------------------------------------------------------------------------------------
    Case("typ JWT (an ID token)", Jwt(header={"typ": "JWT"}), 401, "wrong_token_type"),
    Case("typ missing", Jwt(header={"typ": ABSENT}), 401, "wrong_token_type"),
    Case("typ jwt", Jwt(header={"typ": "jwt"}), 401, "wrong_token_type"),
    Case("typ at+jwt with a trailing space", Jwt(header={"typ": "at+jwt "}), 401, "wrong_token_type"),
    Case("typ a number", Jwt(header={"typ": 1}), 401, "malformed_token"),
    Case("typ application/at+jwt", Jwt(header={"typ": "application/at+jwt"}), 200, None),
    Case("typ AT+JWT", Jwt(header={"typ": "AT+JWT"}), 200, None),
    # --- the signature before any claim -----------------------------------------------------
    Case("tampered sub", Jwt(then=tamper_payload(sub="root")), 401, "bad_signature"),
    Case("tampered and expired", Jwt(claims={"exp": now(-3600), "iat": now(-7200)}, then=tamper_payload(sub="root")),
         401, "bad_signature"),
    Case("tampered, for another audience", Jwt(claims={"aud": "api://billing"}, then=tamper_payload(sub="root")), 401,
         "bad_signature"),
    Case("tampered, of the wrong type", Jwt(header={"typ": "JWT"}, then=tamper_payload(sub="root")), 401,
         "bad_signature"),
]

# Header spoofing, several tokens, paths, sizes and control characters.
REQUESTS = [
    # --- identity headers the client sends --------------------------------------------------
    Case("spoofed identity headers on an allowed route", Issued(), 200, None, headers=spoofing(), upstream={
        "x-user": "orders-app", "x-client": "orders-app", "x-roles": "admin,buyer", "x-plan": "gold",
        "x-department": "sales", "x-tier": "gold", "x-jwt-payload": PAYLOAD}),
    Case("spoofed identity headers, the token lacks those claims", Jwt(), 200, None, headers=spoofing(),
         upstream=CRAFTED_IDENTITY),
    Case("spoofed identity headers on an anonymous route", None, 200, None, path="/health", place=None,
         headers=spoofing(), upstream=ALL_OWNED_ABSENT),
    Case("spoofed identity headers on an anonymous route, with a valid token", Issued(), 200, None, path="/health",
         headers=spoofing(), upstream=ALL_OWNED_ABSENT),
    Case("spoofed identity headers on a denied route", Jwt(then=tamper_payload(sub="root")), 401, "bad_signature",
         headers=spoofing()),
    Case("spoofed identity headers, no token", None, 401, "missing_token", place=None, headers=spoofing()),
    Case("spoofed identity headers on a CORS preflight to a protected route", None, 401, "missing_token",
         method="OPTIONS", place=None, headers=spoofing(("origin", "https://app.example"),
                                                        ("access-control-request-method", "GET"))),
    Case("spoofed identity headers on a CORS preflight to an anonymous route", None, 200, None, path="/health",
         method="OPTIONS", place=None, headers=spoofing(("origin", "https://app.example"),
                                                        ("access-control-request-method", "GET")),
         upstream=ALL_OWNED_ABSENT),
    Case("spoofed identity headers, scope missing", Issued(client="reporting"), 403, "insufficient_scope",
         method="POST", headers=spoofing()),
    Case("x_user (underscore) never reaches the upstream as x-user", Issued(), 200, None,
         headers=(("x_user", "spoof-underscore"), ("x_roles", "spoof-underscore")),
         upstream={"x-user": "orders-app", "x_user": ABSENT, "x_roles": ABSENT}),
    # --- several tokens in several places ---------------------------------------------------
    Case("header and cookie, two tokens", Issued(), 400, "multiple_tokens", headers=(("cookie", "at={token2}"),),
         token2=Jwt()),
    Case("header and query, two tokens", Issued(), 400, "multiple_tokens", path="/orders?access_token={token2}",
         token2=Jwt()),
    Case("cookie and query, two tokens", Issued(), 400, "multiple_tokens", place="cookie",
         path="/orders?access_token={token2}", token2=Jwt()),
    Case("header and another provider's header, two tokens", Issued(), 400, "multiple_tokens",
         headers=(("x-other-token", "{token2}"),), token2=Jwt(issuer="other")),
    Case("header, cookie and query, two tokens", Issued(), 400, "multiple_tokens", headers=(("cookie", "at={token}"),),
         path="/orders?access_token={token2}", token2=Jwt()),
    Case("header, cookie and query, the same token", Issued(), 200, None, headers=(("cookie", "at={token}"),),
         path="/orders?access_token={token}"),
    Case("header and cookie, the same token", Issued(), 200, None, headers=(("cookie", "at={token}"),)),
    Case("header and query, the same token", Issued(), 200, None, path="/orders?access_token={token}"),
    Case("token in the cookie", Issued(), 200, None, place="cookie"),
    Case("token in the query", Issued(), 200, None, place="query"),
    Case("one cookie header, two at cookies", Issued(), 400, "multiple_tokens", place=None,
         headers=(("cookie", "at={token}; at={token2}"),), token2=Jwt()),
    Case("two cookie headers, two tokens", Issued(), 400, "multiple_tokens", place=None,
         headers=(("cookie", "at={token}"), ("cookie", "at={token2}")), token2=Jwt()),
    Case("two query parameters, two tokens", Issued(), 400, "multiple_tokens", place=None,
         path="/orders?access_token={token}&access_token={token2}", token2=Jwt()),
    Case("a valid token and garbage in a cookie", Issued(), 400, "multiple_tokens", headers=(("cookie", "at=x.y.z"),)),
    Case("two Authorization headers, two tokens", Issued(), 400, "multiple_tokens", place=None,
         headers=(("authorization", "Bearer {token}"), ("authorization", "Bearer {token2}")), token2=Jwt()),
    Case("two Authorization headers, the same token", Issued(), 200, None, place=None,
         headers=(("authorization", "Bearer {token}"), ("authorization", "Bearer {token}"))),
    Case("two tokens in one Authorization header", Issued(), 401, "malformed_token", place=None, path=LAB_ROUTE,
         headers=(("authorization", "Bearer {token} {token2}"),), token2=Jwt()),
    Case("two tokens in one Authorization header, on a route that introspects", Issued(), 401, "malformed_token",
         place=None, idp_delta={INTROSPECTION: 0},
         headers=(("authorization", "Bearer {token} {token2}"),), token2=Jwt()),
    Case("another provider's token in the Authorization header", Jwt(issuer="other"), 401, "provider_not_accepted"),
    Case("the provider's token in another provider's header", Issued(), 401, "provider_not_accepted",
         place="x-other-token"),
    Case("bearer in lower case", Issued(), 200, None, place=None, headers=(("authorization", "bearer {token}"),)),
    Case("BEARER in upper case", Issued(), 200, None, place=None, headers=(("authorization", "BEARER {token}"),)),
    Case("spaces around the token", Issued(), 200, None, place=None, headers=(("authorization", "Bearer   {token}  "),)),
    Case("Basic credentials", None, 401, "missing_token", place=None,
         headers=(("authorization", "Basic b3JkZXJzLWFwcDpvcmRlcnMtYXBwLXNlY3JldA=="),)),
    Case("Bearer and nothing", None, 401, "missing_token", place=None, headers=(("authorization", "Bearer "),)),
    Case("not a JWT, not known to the provider", Raw("not-a-token-the-provider-knows"), 401, "token_inactive"),
    # --- paths: an anonymous prefix (/public) and a protected one (/admin) --------------------
    *(
        Case(f"path {path}, no token", None, 401, "missing_token", path=path, place=None)
        for path in (
            "/admin", "/public/../admin", "/public/./../admin", "/public/%2e%2e/admin", "/public/.%2E/admin",
            "/public%2F..%2Fadmin", "/public%2f..%2fadmin", "/public/..%2Fadmin", "/public/..%2fadmin",
            "//admin", "///admin/x", "/./admin", "/public;x=1/../admin", "/admin;jsessionid=1",
            "/admin;/x", "/admin?x=/public", "/public\\..\\admin", "/public%5C..%5Cadmin", "/%61dmin",
            "/public/../../../../admin", "/admin%2F", "/publicity", "/PUBLIC", "/Public/x",
        )
    ),
    Case("path /public/../admin, a viewer's token", Issued(client="reporting"), 403, "claim_mismatch",
         path="/public/../admin"),
    Case("path /public%2F..%2Fadmin, a viewer's token", Issued(client="reporting"), 403, "claim_mismatch",
         path="/public%2F..%2Fadmin"),
    Case("path /ADMIN, no token: no rule matches, so a token is required", None, 401, "missing_token",
         path="/ADMIN/users", place=None),
    Case("path /ADMIN, a viewer's token: matching is case-sensitive, /admin's rule does not apply",
         Issued(client="reporting"), 200, None, path="/ADMIN/users", upstream={"x-user": "reporting"}),
    Case("path /public?/../admin: the query is not the path", None, 200, None, path="/public?/../admin", place=None),
    Case("path /public/%252e%252e/admin: escapes are decoded once", None, 200, None,
         path="/public/%252e%252e/admin", place=None),
    Case("path /public#/../admin", None, 400, None, path="/public#/../admin", place=None),
    Case("path /admin%00", None, 400, "bad_request", path="/admin%00", place=None),
    Case("path /public%00/../admin", None, 400, "bad_request", path="/public%00/../admin", place=None),
    Case("path /admin%3F", None, 400, "bad_request", path="/admin%3F", place=None),
    Case("path /admin%23", None, 400, "bad_request", path="/admin%23", place=None),
    Case("path /admin%0d%0a", None, 400, "bad_request", path="/admin%0d%0ax-user:%20root", place=None),
    Case("path /admin%zz", None, 400, "bad_request", path="/admin%zz", place=None),
    Case("path /admin%ff (not UTF-8)", None, 400, "bad_request", path="/admin%ff", place=None),
    Case("method post in lower case", Issued(client="reporting"), 400, None, method="post"),
    # --- sizes ----------------------------------------------------------------------------------
    Case("a header of 3 MiB", None, 431, None, place=None, headers=(("x-big", "a" * (3 << 20)),)),
    Case("150 headers", None, 431, None, place=None, headers=tuple((f"x-h{i}", "v") for i in range(150))),
    # --- control characters in claim values: never forwarded --------------------------------
    Case("CR LF in sub", Jwt(claims={"sub": "alice\r\nx-admin: true"}), 200, None,
         upstream={"x-user": ABSENT, "x-admin": ABSENT}),
    Case("LF in sub", Jwt(claims={"sub": "alice\nx-admin: true"}), 200, None, upstream={"x-user": ABSENT, "x-admin": ABSENT}),
    Case("NUL in sub", Jwt(claims={"sub": "alice\u0000root"}), 200, None, upstream={"x-user": ABSENT}),
    Case("tab in sub", Jwt(claims={"sub": "alice\troot"}), 200, None, upstream={"x-user": ABSENT}),
    Case("DEL in sub", Jwt(claims={"sub": "alice\u007f"}), 200, None, upstream={"x-user": ABSENT}),
    Case("C1 control (NEL) in sub", Jwt(claims={"sub": "alice\u0085root"}), 200, None, upstream={"x-user": ABSENT}),
    Case("CR LF in one role", Jwt(claims={"roles": ["buyer", "x\r\nx-admin: true"]}), 200, None,
         upstream={"x-roles": ABSENT, "x-admin": ABSENT}),
    Case("LF in a nested claim", Jwt(claims={"tenant": {"plan": "gold\nplatinum"}}), 200, None,
         upstream={"x-plan": ABSENT}),
    Case("sub of 5000 bytes", Jwt(claims={"sub": "a" * 5000}), 200, None, upstream={"x-user": ABSENT}),
    Case("sub empty", Jwt(claims={"sub": ""}), 200, None, upstream={"x-user": ABSENT}),
    Case("sub an object", Jwt(claims={"sub": {"id": "root"}}), 200, None, upstream={"x-user": ABSENT}),
    Case("roles holding an object", Jwt(claims={"roles": ["buyer", {"admin": True}]}), 200, None,
         upstream={"x-roles": ABSENT}),
]

CASES: list[Case] = TOKENS + CLAIMS + REQUESTS
INDEX = {id(case): i for i, case in enumerate(CASES)}


def _param(case: Case) -> Any:
    return pytest.param(case, id=re.sub(r"[^A-Za-z0-9,.=()/%+_-]+", "-", case.name).strip("-"), marks=case.marks)


# --------------------------------------------------------------------------------------------
# the stack: keys, configuration, one gateway for the table


@dataclasses.dataclass
class Ctx:
    idp: harness.Idp
    keys: dict[str, dict[str, Any]]
    tokens: dict[int, tuple[str, Optional[str]]] = dataclasses.field(default_factory=dict)
    minted_at: float = 0.0
    issued: dict[Issued, str] = dataclasses.field(default_factory=dict)


@pytest.fixture(scope="module")
def keys(idp_keys: dict[str, Any]) -> dict[str, dict[str, Any]]:
    made = harness.keygen_many([
        ("RSA-2048", "attacker-1"), ("RSA-2048", "lab-rsa"), ("P-256", "lab-p256"), ("P-384", "lab-p384"),
        ("P-521", "lab-p521"), ("Ed25519", "lab-ed"), ("RSA-2048", "lab-dup"), ("RSA-2048", "lab-dup"),
        ("RSA-2048", "lab-enc"), ("RSA-2048", "lab-ops"), ("RSA-1024", "lab-weak"), ("RSA-2048", "other-1"),
    ])
    names = ["attacker", "lab-rsa", "lab-p256", "lab-p384", "lab-p521", "lab-ed", "lab-dup-a", "lab-dup-b",
             "lab-enc", "lab-ops", "lab-weak", "other"]
    out = dict(zip(names, made))
    out["idp"] = idp_keys["keys"][0]
    out["lab-hs"] = {"kty": "oct", "kid": "lab-hs", "k": LAB_HMAC_SECRET}  # no alg: serves HS256 and HS384
    return out


def flip_last_bit(b64: str) -> str:
    raw = bytearray(harness.b64url_decode(b64))
    raw[-1] ^= 1
    return harness.b64url_encode(bytes(raw))


def lab_jwks(keys: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    pub = {name: harness.public_jwk(k) for name, k in keys.items() if k["kty"] != "oct"}
    rsa_any_alg = {k: v for k, v in pub["lab-rsa"].items() if k != "alg"}  # serves RS256 and PS256
    return {"keys": [
        rsa_any_alg,
        {**pub["lab-rsa"], "kid": "lab-rsa-rs256", "alg": "RS256"},
        pub["lab-p256"], pub["lab-p384"], pub["lab-p521"], pub["lab-ed"],
        pub["lab-dup-a"], pub["lab-dup-b"],
        {**pub["lab-enc"], "use": "enc"},
        {**{k: v for k, v in pub["lab-ops"].items() if k != "use"}, "key_ops": ["encrypt"]},
        pub["lab-weak"],
        {**pub["lab-rsa"], "kid": "lab-e1", "e": "AQ"},
        {**pub["lab-p256"], "kid": "lab-off-curve", "y": flip_last_bit(pub["lab-p256"]["y"])},
        keys["lab-hs"],
        {"kty": "oct", "kid": "lab-hs-short", "alg": "HS256", "k": LAB_SHORT_SECRET},
    ]}


def attack_config(idp: harness.Idp, keys: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "providers": {
            "idp": {
                "issuer": idp.issuer,
                "audiences": [AUD, OPAQUE_AUD],
                "token_type": "at+jwt",
                "token_from": [{"header": "authorization", "prefix": "Bearer "}, {"cookie": "at"},
                               {"query": "access_token"}],
                "jwks": {"uri": idp.jwks_uri, "cluster": "idp"},
                "introspection": {"endpoint": idp.url(INTROSPECTION), "cluster": "idp",
                                  "client_id": "introspector", "client_secret": "introspector-secret"},
            },
            "lab": {
                "issuer": LAB,
                "audiences": [AUD],
                "algorithms": ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384"],
                "clock_skew_seconds": 0,
                "max_lifetime_seconds": 3600,
                "inline_jwks": lab_jwks(keys),
            },
            "other": {
                "issuer": OTHER,
                "audiences": [AUD],
                "token_from": [{"header": "x-other-token"}],
                "inline_jwks": {"keys": [harness.public_jwk(keys["other"])]},
            },
        },
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": True},
            {"match": {"prefix": "/public"}, "anonymous": True},
            {"match": {"prefix": "/admin"}, "claims": {"roles": "admin"}},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"]},
            {"match": {"prefix": "/lab"}, "providers": ["lab", "other"]},
        ],
        "headers": {
            "claims": {"x-user": "sub", "x-client": "client_id", "x-roles": "roles", "x-plan": "tenant.plan",
                       "x-department": "https://tollgate.dev/department"},
            "payload": "x-jwt-payload",
        },
        "policies": [{"name": "buyers", "when": [{"claim": "roles", "contains": "buyer"}],
                      "headers": {"x-tier": "gold"}}],
    }


def raise_header_limit(bootstrap: dict[str, Any]) -> None:
    """Lets 1 MB tokens reach the filter (Envoy's default is 60 KiB of headers): the filter
    itself must cap them. 3 MiB of headers are still refused by Envoy (431)."""
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["max_request_headers_kb"] = 2048


@pytest.fixture(scope="module")
def gateway(idp, echo, keys, tmp_path_factory) -> Any:
    proxy = harness.Envoy(
        tmp_path_factory.mktemp("envoy-attacks"), upstream_port=echo.port, idp_port=idp.port,
        plugin_config=attack_config(idp, keys), bootstrap_hook=raise_header_limit, name="envoy-attacks",
    )
    proxy.start()
    VM_BASELINE[proxy.port] = wasm_vm_stats(proxy)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def ctx(idp, keys) -> Ctx:
    return Ctx(idp=idp, keys=keys)


# --------------------------------------------------------------------------------------------
# making the tokens of the table (one mint run for all of them)


def default_claims(issuer: str, ctx: Ctx) -> dict[str, Any]:
    if issuer == "idp":
        return {"iss": ctx.idp.issuer, "aud": AUD, "sub": "crafted-user", "client_id": "orders-app",
                "scope": "orders:read", "iat": Now(0), "exp": Now(300)}
    return {"iss": ISSUERS[issuer], "aud": AUD, "sub": f"{issuer}-user", "iat": Now(0), "exp": Now(300)}


def substitute(value: Any, ctx: Ctx, t: int) -> Any:
    """Fills the placeholders of a row: times, issuer URLs, the attacker's key and bait URLs."""
    if isinstance(value, Now):
        return value.value(t)
    if isinstance(value, list):
        return [substitute(v, ctx, t) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, ctx, t) for k, v in value.items()}
    if isinstance(value, str):
        return {
            "<attacker>": harness.public_jwk(ctx.keys["attacker"]),
            "<bait-jku>": ctx.idp.url(BAIT_JKU),
            "<bait-x5u>": ctx.idp.url(BAIT_X5U),
            "<idp-issuer>": ctx.idp.issuer,
            "<idp-issuer>/": ctx.idp.issuer + "/",
            "<IDP-ISSUER>": ctx.idp.issuer.upper(),
        }.get(value, value)
    return value


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        if v is ABSENT:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def payload_text(marker: str, claims: dict[str, Any]) -> str:
    """The raw payloads the table names by marker: same claims, one defect each."""
    body = json.dumps(claims, separators=(",", ":"))
    inner = body[1:-1]
    return {
        "<claims>": body,
        "<claims> x": body + " x",
        "\ufeff<claims>": "\ufeff" + body,
        "<claims-with-duplicate-sub>": "{" + inner + ',"sub":"admin"}',
        "<claims-with-duplicate-plan>": "{" + inner + ',"tenant":{"plan":"gold","plan":"platinum"}}',
        "<claims-with-lone-surrogate>": "{" + inner + ',"name":"\\ud800"}',
        "<claims-nested-100>": "{" + inner + ',"deep":' + nested(100) + "}",
        "<claims-nested-17>": "{" + inner + ',"deep":' + nested(17) + "}",
        "<claims-exp-1e400>": "{" + inner + ',"big":1e400}',
    }.get(marker, marker)


def mint_spec(spec: Jwt, ctx: Ctx, t: int) -> dict[str, Any]:
    claims = substitute(merged(default_claims(spec.issuer, ctx), spec.claims), ctx, t)
    key_name = spec.key if spec.key is not None or spec.alg == "none" else DEFAULT_KEY[spec.issuer]
    key = ctx.keys.get(key_name) if key_name else None
    alg = spec.alg or (key or {}).get("alg")
    base_header = {**(IDP_TYP if spec.issuer == "idp" else {}), "kid": (key or {}).get("kid")}
    if key is None:
        base_header.pop("kid")
    header = substitute(merged(base_header, spec.header), ctx, t)
    out: dict[str, Any] = {"key": key if not (alg or "").startswith("HS") and alg != "none" else None,
                           "alg": alg, "header": header, "claims": claims}
    if spec.header_raw is not None:
        out["header_raw"] = spec.header_raw
    if spec.payload_raw is not None:
        out["payload_raw"] = payload_text(spec.payload_raw, claims)
    if spec.hmac == "lab":
        out["hmac_secret_b64url"] = LAB_HMAC_SECRET
    elif spec.hmac == "short":
        out["hmac_secret_b64url"] = LAB_SHORT_SECRET
    elif spec.hmac and spec.hmac.startswith("public-pem:"):
        out["hmac_secret_from_public_pem_of"] = harness.public_jwk(ctx.keys[spec.hmac.split(":", 1)[1]])
    return out


def python_signed(spec: Signed, ctx: Ctx, t: int) -> str:
    if spec.payload in (b"<lab-claims>", b"<idp-claims>", b"<idp-claims-invalid-utf8>"):
        issuer = "lab" if spec.payload == b"<lab-claims>" else "idp"
        payload = json.dumps(substitute(default_claims(issuer, ctx), ctx, t)).encode()
        if spec.payload == b"<idp-claims-invalid-utf8>":
            payload = payload[:-1] + b',"name":"\xff\xfe"}'
    else:
        payload = spec.payload
    signing_input = f"{harness.b64url_encode(spec.header)}.{harness.b64url_encode(payload)}".encode()
    if spec.salt_len is None:
        signature = rs256_sign(ctx.keys["idp"], signing_input)
    else:
        signature = ps256_sign(ctx.keys["lab-rsa"], signing_input, spec.salt_len)
    return f"{signing_input.decode()}.{harness.b64url_encode(signature)}"


def make_tokens(ctx: Ctx) -> None:
    """Mints every row's tokens in one ``harness.mint`` run. Rows hold times relative to now
    with margins of 30 s, so the table is minted again when it is older than 20 s."""
    t = int(time.time())
    specs: list[dict[str, Any]] = []
    slots: list[tuple[int, int]] = []  # (case index, 0 for token / 1 for token2)
    plain: dict[tuple[int, int], str] = {}
    afterwards: dict[tuple[int, int], Callable[[str, Ctx], str]] = {}
    for i, case in enumerate(CASES):
        for which, spec in enumerate((case.token, case.token2)):
            if isinstance(spec, Jwt):
                specs.append(mint_spec(spec, ctx, t))
                slots.append((i, which))
                if spec.then is not None:
                    afterwards[(i, which)] = spec.then
            elif isinstance(spec, Signed):
                plain[(i, which)] = python_signed(spec, ctx, t)
            elif isinstance(spec, Raw):
                plain[(i, which)] = spec.text
            elif isinstance(spec, Issued):
                if spec not in ctx.issued:
                    ctx.issued[spec] = ctx.idp.token(spec.client, scope=spec.scope, resource=spec.resource)
                plain[(i, which)] = ctx.issued[spec]
    minted = dict(zip(slots, harness.mint(specs)))
    for slot, fn in afterwards.items():
        minted[slot] = fn(minted[slot], ctx)
    minted.update(plain)
    ctx.tokens = {i: (minted.get((i, 0), ""), minted.get((i, 1))) for i in range(len(CASES))}
    ctx.minted_at = time.monotonic()


# --------------------------------------------------------------------------------------------
# sending a row, and reading the answer


def request_for(case: Case, token: str, token2: Optional[str]) -> tuple[str, list[tuple[str, str]]]:
    def fill(text: str) -> str:
        return text.replace("{token}", token).replace("{token2}", token2 or "")

    path = fill(case.path)
    headers = [(n, fill(v)) for n, v in case.headers]
    if case.token is not None and case.place == "bearer":
        headers.append(("authorization", f"Bearer {token}"))
    elif case.token is not None and case.place == "cookie":
        headers.append(("cookie", f"at={token}"))
    elif case.token is not None and case.place == "query":
        path += ("&" if "?" in path else "?") + "access_token=" + token
    elif case.token is not None and case.place == "x-other-token":
        headers.append(("x-other-token", token))
    return path, headers


def problem_reason(result: harness.HttpResult) -> Optional[str]:
    if result.headers.get("content-type") != "application/problem+json":
        return None
    return result.json().get("reason")


SENT: dict[str, int] = {}  # x-request-id -> expected status, for the access-log check


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_attack(case: Case, gateway: harness.Envoy, ctx: Ctx, idp: harness.Idp) -> None:
    if not ctx.tokens or time.monotonic() - ctx.minted_at > 20:
        make_tokens(ctx)
    token, token2 = ctx.tokens[INDEX[id(case)]]
    path, headers = request_for(case, token, token2)
    request_id = f"atk-{INDEX[id(case)]}"
    headers.append(("x-request-id", request_id))
    before = idp.counts() if case.idp_delta else {}

    result = gateway.request(case.method, path, headers, body=b"{}" if case.method.upper() == "POST" else None,
                             timeout=30)
    SENT[request_id] = result.status
    after = idp.counts() if case.idp_delta else {}
    deltas = {p: after.get(p, 0) - before.get(p, 0) for p in case.idp_delta}

    shown = f"{case.name}: {case.method} {path[:120]} -> {result.status} {result.text[:300]}"
    if deltas:
        shown += f" (provider requests during it: {deltas})"
    assert result.status == case.status, shown
    reason = problem_reason(result)
    assert reason == case.reason, shown
    if case.status == 401 and case.reason is not None:
        assert result.headers["www-authenticate"].startswith('Bearer realm="tollgate"'), shown
    assert deltas == dict(case.idp_delta), shown
    if case.status != 200:
        return
    seen = result.json()["headers"]
    spoofed = {n: v for n, v in seen.items() if "spoof" in v}
    assert not spoofed, f"{case.name}: spoofed values reached the upstream: {spoofed}"
    for name, want in case.upstream.items():
        if want is ABSENT:
            assert name not in seen, f"{case.name}: the upstream saw {name}: {seen.get(name)!r}"
        elif want is PAYLOAD:
            assert seen.get(name) == token.split(".")[1], f"{case.name}: {name} = {seen.get(name)!r}"
        else:
            assert seen.get(name) == want, f"{case.name}: {name} = {seen.get(name)!r}, not {want!r}"


def test_a_clock_skew_over_ten_minutes_is_refused_at_load(idp, echo, keys, tmp_path):
    config = attack_config(idp, keys)
    config["providers"]["lab"]["clock_skew_seconds"] = 601
    proxy = harness.Envoy(tmp_path, upstream_port=echo.port, idp_port=idp.port, plugin_config=config)
    ok, output = proxy.validate()
    assert not ok
    assert "providers.lab.clock_skew_seconds: must be between 0 and 600" in output


# --------------------------------------------------------------------------------------------
# after the table




VM_BASELINE: dict[int, dict[str, int]] = {}  # gateway port -> wasm stats right after start


def wasm_vm_stats(gateway: harness.Envoy) -> dict[str, int]:
    """Envoy's own wasm counters and gauges (VMs created and active, reloads, load failures)."""
    return {k: v for k, v in gateway.stat_values("wasm").items() if not k.startswith("wasmcustom.")}


def per_worker_connections(gateway: harness.Envoy) -> dict[str, int]:
    return {
        name.split(".")[-2]: value
        for name, value in gateway.stat_values(f"127.0.0.1_{gateway.port}.worker_").items()
        if name.endswith(".downstream_cx_total")
    }


def assert_gateway_healthy(gateway: harness.Envoy, token: str, requests: int = 24) -> dict[str, int]:
    """No sign of a failed VM in the log or the stats, and a valid request passes on both
    workers (connections are spread over the workers by the kernel: ``requests`` new ones
    land on both almost surely; the per-worker connection counters show it)."""
    vm = wasm_vm_stats(gateway)
    assert not gateway.wasm_failures(), "\n".join(gateway.wasm_failures()[:20])
    baseline = VM_BASELINE.get(gateway.port)
    if baseline is not None:
        assert vm == baseline, f"Envoy's wasm VM stats changed: {baseline} -> {vm}"
    for name, value in vm.items():
        if "vm_reload" in name or "fail" in name:
            assert value == 0, vm
    before = per_worker_connections(gateway)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(
            lambda i: gateway.request("GET", "/orders", {"authorization": f"Bearer {token}"}), range(requests)))
    assert [r.status for r in results] == [200] * requests, [(r.status, r.text[:200]) for r in results]
    after = per_worker_connections(gateway)
    served = {w: after.get(w, 0) - before.get(w, 0) for w in after}
    assert len(served) == 2 and all(n > 0 for n in served.values()), f"requests by worker: {served}"
    return vm


def test_the_gateway_survived(gateway: harness.Envoy, idp: harness.Idp) -> None:
    """After the table: no input made the filter panic or Envoy's wasm VM fail, nothing
    refused reached the upstream, and a valid request still passes on both workers."""
    vm = assert_gateway_healthy(gateway, idp.token("orders-app", scope="orders:read"))
    print(f"\nwasm stats after {len(SENT)} attack requests: {vm}")
    # Envoy's access log ends each line with the upstream host, "-" when the request went
    # nowhere: only the rows expected to pass may have reached the echo upstream.
    reached: dict[str, bool] = {}
    deadline = time.monotonic() + 15
    while True:
        gateway.admin("/reopen_logs", "POST")  # flushes the access log's buffer
        for line in gateway.access_log().splitlines():
            found = re.search(r'"(atk-\d+)" "[^"]*" "([^"]*)"$', line)
            if found:
                reached[found.group(1)] = found.group(2) != "-"
        if all(rid in reached or SENT[rid] in (400, 431) for rid in SENT) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    wrong = {rid: reached.get(rid) for rid, status in SENT.items() if reached.get(rid, False) != (status == 200)}
    wrong = {rid: r for rid, r in wrong.items() if not (r is None and SENT[rid] in (400, 431))}
    assert not wrong, f"requests whose upstream reach is not what their status says: {wrong}"
    counts = idp.counts()
    assert counts.get(BAIT_JKU, 0) == 0 and counts.get(BAIT_X5U, 0) == 0, counts
