#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (fuzz/corpus/<target>/) and the keys
the jws_parse target verifies with (fuzz/keys/verify_keys.json).

Run from anywhere: `python3 fuzz/seeds.py` (needs the `cryptography` package). The fixed
Ed25519 seed and HS256 secret must equal those in fuzz/src/lib.rs, so that the gate_decide
seeds verify. RSA and ECDSA keys are generated afresh, so running it again rewrites the tokens
signed with them and verify_keys.json together. Each file is one input; keep them small.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")
WYCHEPROOF = os.path.join(ROOT, "tests", "vectors", "wycheproof", "json_web_key_test.json")

NOW = 1_700_000_000
ISS = "https://idp.fuzz.example"
AUD = "api://fuzz"
ED25519_SEED = bytes([7] * 32)
HMAC_SECRET = b"tollgate-fuzz-hs256-secret-0123456789"
HS384_SECRET = bytes(range(48))
HS512_SECRET = bytes(range(64, 128))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def uint(n, size):
    return b64(n.to_bytes(size, "big"))


ED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(ED25519_SEED)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {
    "ES256": (ec.generate_private_key(ec.SECP256R1()), hashes.SHA256(), 32, "P-256"),
    "ES384": (ec.generate_private_key(ec.SECP384R1()), hashes.SHA384(), 48, "P-384"),
    "ES512": (ec.generate_private_key(ec.SECP521R1()), hashes.SHA512(), 66, "P-521"),
}
HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
HMACS = {
    "HS256": ("hs", HMAC_SECRET, hashlib.sha256),
    "HS384": ("hs384", HS384_SECRET, hashlib.sha384),
    "HS512": ("hs512", HS512_SECRET, hashlib.sha512),
}


def sign(alg, signing_input):
    data = signing_input.encode()
    if alg == "EdDSA":
        return ED_KEY.sign(data)
    if alg in HMACS:
        _, secret, digest = HMACS[alg]
        return hmac.new(secret, data, digest).digest()
    if alg.startswith("RS"):
        return RSA_KEY.sign(data, padding.PKCS1v15(), HASHES[alg[2:]])
    if alg.startswith("PS"):
        h = HASHES[alg[2:]]
        return RSA_KEY.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    key, h, size, _ = EC_KEYS[alg]
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(h)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def token(header, claims, alg=None):
    alg = alg or header["alg"]
    signing_input = seg(header) + "." + seg(claims)
    return signing_input + "." + b64(sign(alg, signing_input))


def kid_of(alg):
    if alg == "EdDSA":
        return "ed"
    if alg in HMACS:
        return HMACS[alg][0]
    if alg[:2] in ("RS", "PS"):
        return "rsa"
    return alg.lower()


def claims(**extra):
    c = {"iss": ISS, "aud": AUD, "sub": "alice", "client_id": "fuzz-app", "exp": NOW + 300,
         "iat": NOW, "scope": "orders:read orders:write", "roles": ["admin", "buyer"],
         "tenant": {"plan": "gold"}}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


def wycheproof():
    with open(WYCHEPROOF) as f:
        return json.load(f)["testGroups"]


def verify_keys():
    """RSA and EC keys of this run, the extra HMAC secrets, and the keys of the Wycheproof
    groups with a valid JWS (so those tokens verify too). The fixed keys are added by the
    target itself."""
    nums = RSA_KEY.public_key().public_numbers()
    keys = [{"kty": "RSA", "kid": "rsa", "n": uint(nums.n, 256), "e": uint(nums.e, 3)}]
    for alg, (key, _, size, crv) in EC_KEYS.items():
        n = key.public_key().public_numbers()
        keys.append({"kty": "EC", "crv": crv, "kid": alg.lower(), "alg": alg,
                     "x": uint(n.x, size), "y": uint(n.y, size)})
    for alg in ("HS384", "HS512"):
        kid, secret, _ = HMACS[alg]
        keys.append({"kty": "oct", "kid": kid, "alg": alg, "k": b64(secret)})
    seen = {(k["kid"], k["kty"]) for k in keys} | {("ed", "OKP"), ("hs", "oct")}
    for group in wycheproof():
        if not any(t["result"] == "valid" for t in group["tests"]):
            continue
        for k in group.get("public", group["private"])["keys"]:
            if (k.get("kid"), k.get("kty")) in seen or "d" in k:
                continue
            seen.add((k.get("kid"), k.get("kty")))
            keys.append(k)
    return {"keys": keys}


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = json.dumps(data, indent=1).encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def jws_seeds():
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                "EdDSA", "HS256", "HS384", "HS512"]:
        write("jws_parse", alg.lower(), token({"alg": alg, "kid": kid_of(alg), "typ": "at+jwt"},
                                              claims()))
    for group in wycheproof():
        for t in group["tests"]:
            if isinstance(t.get("jws"), str):
                write("jws_parse", "wycheproof-%s-%d" % (group["comment"], t["tcId"]), t["jws"])
    body = seg({"iss": ISS})
    for name, header in [
        ("alg-none", {"alg": "none"}),
        ("crit", {"alg": "EdDSA", "crit": ["exp"], "exp": 1}),
        ("b64-false", {"alg": "EdDSA", "b64": False}),
        ("cty-jwt", {"alg": "EdDSA", "cty": "JWT"}),
        ("jwk-header", {"alg": "EdDSA", "jwk": {"kty": "oct", "k": "AAAA"}, "jku": "https://x"}),
    ]:
        write("jws_parse", name, seg(header) + "." + body + ".c2ln")
    write("jws_parse", "jwe", seg({"alg": "RSA-OAEP", "enc": "A256GCM"}) + ".a.b.c.d")
    write("jws_parse", "padded", seg({"alg": "EdDSA"}) + "." + body + "=.c2ln")


def gate_seeds():
    ed = {"alg": "EdDSA", "kid": "ed"}
    hs = {"alg": "HS256", "kid": "hs"}
    cases = {
        "eddsa": (ed, claims()),
        "hs256": (hs, claims()),
        "eddsa-no-kid": ({"alg": "EdDSA", "typ": "at+jwt"}, claims()),
        "aud-array": (ed, claims(aud=["other", AUD])),
        "expired": (ed, claims(exp=NOW - 3600)),
        "no-exp": (hs, claims(exp=None)),
        "nbf-future": (ed, claims(nbf=NOW + 3600)),
        "wrong-aud": (ed, claims(aud="api://other")),
        "wrong-iss": (hs, claims(iss="https://evil.example")),
        "no-scope": (ed, claims(scope=None, scp=["orders:read"])),
        "header-injection": (ed, claims(sub="alice\r\nx-admin: 1")),
        "unknown-kid": ({"alg": "EdDSA", "kid": "nope"}, claims()),
        "hs384": ({"alg": "HS384", "kid": "hs"}, claims()),
    }
    for name, (header, c) in cases.items():
        write("gate_decide", name, "Bearer " + token(header, c))
    t = token(ed, claims())
    write("gate_decide", "lower-case-scheme", "bearer   " + t + "  ")
    write("gate_decide", "basic", "Basic YWxpY2U6c2VjcmV0")
    # Signed mode: header JSON, a newline, payload JSON; the target signs them itself.
    def compact(obj):
        return json.dumps(obj, separators=(",", ":"))

    for name, header, c in [
        ("signed-eddsa", ed, claims()),
        ("signed-hs256", {"alg": "HS256", "typ": "at+jwt"}, claims(scope=None, scp=["orders:write"])),
        ("signed-dates", ed, claims(nbf=NOW - 10, exp=NOW + 0.5, roles="admin")),
        ("signed-kid-mismatch", {"alg": "HS256", "kid": "ed"}, claims()),
    ]:
        write("gate_decide", name, compact(header) + "\n" + compact(c))
    # Algorithm confusion: EdDSA header, signed with HMAC over the public key bytes.
    x = ED_KEY.public_key().public_bytes_raw()
    signing_input = seg(ed) + "." + seg(claims())
    write("gate_decide", "confusion",
          "Bearer " + signing_input + "." + b64(hmac.new(x, signing_input.encode(),
                                                          hashlib.sha256).digest()))


def jwks_seeds(keys):
    x = b64(ED_KEY.public_key().public_bytes_raw())
    write("jwks_parse", "fixed", {"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig", "x": x},
        {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HMAC_SECRET)}]})
    write("jwks_parse", "verify-keys", keys)
    write("jwks_parse", "empty", {"keys": []})
    write("jwks_parse", "duplicate-kid", {"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": x},
        {"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": x, "key_ops": ["verify"]}]})
    for i, group in enumerate(wycheproof()):
        for part in ("public", "private"):
            if part in group:
                write("jwks_parse", "wycheproof-%02d-%s-%s" % (i, group["comment"], part),
                      group[part])


def introspection_seeds():
    active = {"active": True, "client_id": "fuzz-app", "exp": NOW + 300, "iat": NOW,
              "iss": "https://op.fuzz.example", "jti": "6f7aEpf1q-DKLz1OC0vQi",
              "scope": "openid orders:read", "sub": "alice", "token_type": "Bearer",
              "aud": "api://fuzz"}
    write("introspection", "active", active)
    write("introspection", "active-aud-array", dict(active, aud=["other", "api://fuzz"]))
    write("introspection", "active-no-exp", {k: v for k, v in active.items() if k != "exp"})
    write("introspection", "active-wrong-type", dict(active, token_type="DPoP"))
    write("introspection", "active-string", dict(active, active="true"))
    write("introspection", "inactive", {"active": False})
    write("introspection", "inactive-with-claims", {"active": False, "sub": "alice"})
    # Cache entries: version 1, SHA-256 of the token, active flag, until (ms, big-endian), JSON.
    digest = hashlib.sha256(b"opaque-access-token").digest()
    until = struct.pack(">Q", NOW * 1000 + 60_000)
    compact = json.dumps(active, separators=(",", ":")).encode()
    write("introspection", "cached-active", b"\x01" + digest + b"\x01" + until + compact)
    write("introspection", "cached-inactive", b"\x01" + digest + b"\x00" + until)


def config_seeds():
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        blocks = re.findall(r"```json\n(.*?)```", f.read(), re.S)
    minimal = {"demo": {"issuer": "http://127.0.0.1:9000", "audiences": ["api://orders"],
                        "discovery": {"cluster": "idp"}}}
    for i, block in enumerate(blocks):
        try:
            doc = json.loads(block)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if "providers" not in doc:
            # A fragment of the page: set it in a whole configuration.
            if "issuer" in doc:
                doc = {"providers": {"p": doc}}
            elif "match" in doc:
                doc = {"providers": minimal, "rules": [doc]}
            else:
                doc = dict({"providers": minimal}, **doc)
        write("config", "docs-%02d" % i, doc)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = re.findall(r"```json\n(.*?)```", f.read(), re.S)
    for i, block in enumerate(readme):
        write("config", "readme-%02d" % i, block)
    write("config", "fuzz-fixed", {
        "providers": {"fixed": {
            "issuer": ISS, "audiences": [AUD], "algorithms": ["EdDSA", "HS256"],
            "inline_jwks": {"keys": [
                {"kty": "OKP", "crv": "Ed25519", "kid": "ed",
                 "x": b64(ED_KEY.public_key().public_bytes_raw())},
                {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HMAC_SECRET)}]}}},
        "rules": [{"match": {"prefix": "/health"}, "anonymous": True}],
        "headers": {"claims": {"x-user": "sub"}, "payload": "x-jwt-payload"}})


def keys_record_seeds():
    jwks = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed",
                                 "x": b64(ED_KEY.public_key().public_bytes_raw())}]})
    record = {"version": 3, "jwks": jwks, "fetched_at_ms": NOW * 1000 - 1000,
              "refresh_at_ms": NOW * 1000 + 299_000, "usable_until_ms": NOW * 1000 + 86_400_000,
              "failures": 0, "next_attempt_ms": 0, "last_error": None, "kid_refetch_ms": 0,
              "jwks_uri": "https://idp.fuzz.example/jwks", "introspection_uri": None}
    rec = json.dumps(record).encode()
    write("keys_record", "refresh", rec + b"\x00" + jwks.encode())
    write("keys_record", "bad-answer", rec + b"\x00" + b'{"keys": [{"kty": "oct", "k": "AAAA"}]}')
    write("keys_record", "no-answer", rec)
    failing = dict(record, jwks=None, failures=4, next_attempt_ms=NOW * 1000 + 8000,
                   last_error="JWKS answered HTTP 503", version=18446744073709551615)
    write("keys_record", "failing", json.dumps(failing).encode() + b"\x00" + jwks.encode())


def ratelimit_seeds():
    def seed(selector, requests, period, burst, now, state):
        return struct.pack("<BQQQQ", selector, requests - 1, period - 1, burst - 1, now) + state

    now = NOW * 1000
    write("ratelimit", "rate-fresh", seed(0x80, 10, 1000, 20, now, b""))
    write("ratelimit", "rate-state", seed(0, 10, 1000, 20, now, b"%d/10" % (now * 10 + 5000)))
    write("ratelimit", "rate-rescaled", seed(0, 3, 1000, 3, now, b"%d/7" % (now * 7)))
    write("ratelimit", "rate-future", seed(0, 5, 60000, 5, now, b"99999999999999999999/5"))
    write("ratelimit", "quota-hour", seed(1, 100, 1, 1, now, b"%d:99" % (now - now % 3_600_000)))
    write("ratelimit", "quota-day", seed(3, 1000, 1, 1, now, b"%d:5" % (now - now % 86_400_000)))
    write("ratelimit", "quota-month", seed(5, 1000, 1, 1, now, b"1698796800000:1000"))


def normalize_path_seeds():
    for i, path in enumerate(["/orders/1", "/a/../b", "/%2e%2e/admin", "//admin", "/a;x=1/b",
                              "/a\\b", "/admin?x=1", "/orders%2F..%2Fadmin", "/a/./b/",
                              "/%25%32%65", "/caf%C3%A9"]):
        write("normalize_path", "path-%02d" % i, path)


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    keys = verify_keys()
    os.makedirs(os.path.join(FUZZ, "keys"), exist_ok=True)
    with open(os.path.join(FUZZ, "keys", "verify_keys.json"), "w") as f:
        json.dump(keys, f, indent=1)
        f.write("\n")
    jws_seeds()
    gate_seeds()
    jwks_seeds(keys)
    introspection_seeds()
    config_seeds()
    keys_record_seeds()
    ratelimit_seeds()
    normalize_path_seeds()


if __name__ == "__main__":
    main()
