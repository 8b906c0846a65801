"""The JWT gate, told as a platform team would try it: real Envoy (two workers) loading the built
tollgate.wasm, the real oidc-provider issuing RFC 9068 access tokens, and an upstream that echoes
what reached it."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time
from typing import Any

import pytest

import harness

AUDIENCE = "api://orders"


def gate_config(idp: harness.Idp, **provider: Any) -> dict[str, Any]:
    """The configuration of the stories: one provider, a few rules, identity headers."""
    base: dict[str, Any] = {
        "issuer": idp.issuer,
        "audiences": [AUDIENCE],
        "token_type": "at+jwt",
        "jwks": {"uri": idp.jwks_uri, "cluster": "idp"},
    }
    base.update(provider)
    return {
        "providers": {"local": base},
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": True},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"]},
            {"match": {"prefix": "/admin"}, "claims": {"roles": "admin"}},
        ],
        "headers": {
            "claims": {
                "x-user": "sub",
                "x-client": "client_id",
                "x-roles": "roles",
                "x-plan": "tenant.plan",
                "x-department": "https://tollgate.dev/department",
            },
            "payload": "x-jwt-payload",
        },
    }


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def upstream_saw(result: harness.HttpResult) -> dict[str, str]:
    assert result.status == 200, (result.status, result.text)
    return result.json()["headers"]


def reason(result: harness.HttpResult) -> str:
    return result.json()["reason"]


@pytest.fixture
def gate(envoy_with, idp):
    return envoy_with(gate_config(idp))


def claims_for(idp: harness.Idp, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": idp.issuer,
        "aud": AUDIENCE,
        "sub": "crafted",
        "client_id": "orders-app",
        "scope": "orders:read",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def crafted(idp_keys: dict[str, Any], claims: dict[str, Any], **header: Any) -> str:
    key = idp_keys["keys"][0]
    spec = {"key": key, "alg": "RS256", "header": {"typ": "at+jwt", "kid": key["kid"], **header}, "claims": claims}
    return harness.mint([spec])[0]


def test_a_valid_token_reaches_the_upstream_with_its_identity(gate, idp):
    token = idp.token("orders-app", scope="orders:read orders:write")

    seen = upstream_saw(gate.request("GET", "/orders/42", {**bearer(token), "x-user": "admin", "x-plan": "platinum"}))

    assert seen["x-user"] == "orders-app", "the spoofed x-user was replaced"
    assert seen["x-client"] == "orders-app"
    assert seen["x-roles"] == "admin,buyer"
    assert seen["x-plan"] == "gold", "nested claim, and the spoofed value is gone"
    assert seen["x-department"] == "sales", "URL-named claim"
    assert seen["x-jwt-payload"] == token.split(".")[1]
    assert seen["authorization"] == f"Bearer {token}", "the token is kept unless strip_token is set"


def test_with_strip_token_the_upstream_never_sees_the_token(envoy_with, idp):
    config = gate_config(idp)
    config["headers"]["strip_token"] = True
    gate = envoy_with(config)
    token = idp.token("orders-app", scope="orders:read")

    # Its first request verifies it; the later ones find it remembered, in either worker.
    for attempt in range(4):
        seen = upstream_saw(gate.request("GET", "/orders/42", {**bearer(token), "x-user": "admin"}))
        assert "authorization" not in seen, attempt
        assert seen["x-user"] == "orders-app", attempt


def test_anonymous_routes_pass_but_spoofed_identity_never_does(gate):
    seen = upstream_saw(gate.request("GET", "/health", {"x-user": "admin", "x-roles": "admin", "x-jwt-payload": "e30"}))
    assert "x-user" not in seen and "x-roles" not in seen and "x-jwt-payload" not in seen


def test_a_missing_token_gets_a_bearer_challenge(gate):
    result = gate.request("GET", "/orders")
    assert result.status == 401
    assert result.headers["www-authenticate"] == 'Bearer realm="tollgate"'
    assert result.headers["content-type"] == "application/problem+json"
    assert reason(result) == "missing_token"


def test_bad_tokens_are_refused_with_the_reason(gate, idp, idp_keys):
    good = idp.token("orders-app", scope="orders:read")
    head, payload, sig = good.split(".")
    forged_claims = json.loads(harness.b64url_decode(payload))
    forged_claims["sub"] = "root"
    tampered = ".".join([head, harness.b64url_encode(json.dumps(forged_claims).encode()), sig])
    public = harness.public_jwk(idp_keys["keys"][0])
    now = int(time.time())
    cases = {
        "expired": (crafted(idp_keys, claims_for(idp, exp=now - 120, iat=now - 600)), "token_expired"),
        "not yet valid": (crafted(idp_keys, claims_for(idp, nbf=now + 3600)), "token_not_yet_valid"),
        "wrong issuer": (crafted(idp_keys, claims_for(idp, iss="https://evil.example")), "unknown_issuer"),
        "wrong audience": (crafted(idp_keys, claims_for(idp, aud="api://billing")), "wrong_audience"),
        "an ID token, not an access token": (crafted(idp_keys, claims_for(idp), typ="JWT"), "wrong_token_type"),
        "tampered": (tampered, "bad_signature"),
        "alg none": (
            harness.mint([{"key": None, "alg": "none", "header": {"typ": "at+jwt"}, "claims": claims_for(idp)}])[0],
            "alg_none",
        ),
        "HS256 signed with the public key": (
            harness.mint([{
                "key": None, "alg": "HS256", "hmac_secret_from_public_pem_of": public,
                "header": {"typ": "at+jwt", "kid": public["kid"]}, "claims": claims_for(idp),
            }])[0],
            "algorithm_not_allowed",
        ),
        "garbage": ("not-a-jwt", "malformed_token"),
    }
    for name, (token, want) in cases.items():
        result = gate.request("GET", "/orders", {**bearer(token), "x-user": "spoofed"})
        assert result.status == 401, (name, result.status, result.text)
        assert reason(result) == want, name
        challenge = result.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="tollgate", error="invalid_token", error_description="'), name


def test_a_token_without_the_scope_is_forbidden(gate, idp):
    reader = idp.token("reporting", scope="orders:read")

    result = gate.request("POST", "/orders", bearer(reader), body=b"{}")

    assert result.status == 403
    assert 'error="insufficient_scope"' in result.headers["www-authenticate"]
    assert 'scope="orders:write"' in result.headers["www-authenticate"]
    assert reason(result) == "insufficient_scope"
    # The same token may read, and a writer may write.
    assert gate.request("GET", "/orders", bearer(reader)).status == 200
    writer = idp.token("orders-app", scope="orders:read orders:write")
    assert gate.request("POST", "/orders", bearer(writer), body=b"{}").status == 200


def test_a_role_is_required_on_admin_routes(gate, idp):
    assert gate.request("GET", "/admin/users", bearer(idp.token("reporting", scope="orders:read"))).status == 403
    assert gate.request("GET", "/admin/users", bearer(idp.token("orders-app", scope="orders:read"))).status == 200


def test_every_decision_is_audited_without_the_token(gate, idp):
    token = idp.token("orders-app", scope="orders:read")
    gate.request("GET", "/orders", {**bearer(token), "x-request-id": "audit-allow-1"})
    gate.request("GET", "/orders", {**bearer("x.y.z"), "x-request-id": "audit-deny-1"})
    events = gate.audit_events(["audit-allow-1", "audit-deny-1"])
    allow, deny = events["audit-allow-1"], events["audit-deny-1"]
    assert (allow["decision"], allow["status"], allow["subject"], allow["client_id"]) == ("allow", 200, "orders-app", "orders-app")
    assert allow["issuer"] == idp.issuer and allow["provider"] == "local" and allow["scopes"] == ["orders:read"]
    assert (deny["decision"], deny["status"], deny["reason"]) == ("deny", 401, "malformed_token")
    assert token not in gate.logs()
    assert allow["token_sha256"] == hashlib.sha256(token.encode()).hexdigest()[:16]


def test_a_bad_configuration_is_refused_at_load_with_its_path(envoy_with, idp):
    config = gate_config(idp)
    config["providers"]["local"]["jwks"]["uri"] = "idp/jwks"
    with pytest.raises(harness.ServiceError) as failure:
        envoy_with(config)
    assert "providers.local.jwks.uri: not an absolute URL" in str(failure.value)


@pytest.fixture
def own_idp(tmp_path):
    """A provider of this test's own, for stories that stop or rotate it."""
    keys = harness.keygen("RS256", "rot-1")
    keys_file = harness.write_json(tmp_path / "keys-1.json", keys)
    provider = harness.Idp(tmp_path / "own-idp")
    provider.start(keys_file=keys_file)
    try:
        yield provider, keys
    finally:
        provider.stop()


def test_the_first_token_signed_with_a_rotated_key_passes(envoy_with, own_idp, tmp_path):
    idp, old_keys = own_idp
    gate = envoy_with(gate_config(idp), idp_port=idp.port)
    assert gate.request("GET", "/orders", bearer(idp.token("orders-app", scope="orders:read"))).status == 200

    # The provider rotates: a new signing key first, the old one still published.
    new_keys = harness.keygen("RS256", "rot-2")
    rotated = {"keys": new_keys["keys"] + old_keys["keys"]}
    idp.restart(harness.write_json(tmp_path / "keys-2.json", rotated))
    token = idp.token("orders-app", scope="orders:read")
    assert harness.decode_jwt(token)[0]["kid"] == "rot-2"

    result = gate.request("GET", "/orders", bearer(token))

    assert result.status == 200, result.text


def test_cached_keys_keep_serving_when_the_provider_is_down(envoy_with, own_idp):
    idp, keys = own_idp
    gate = envoy_with(gate_config(idp), idp_port=idp.port)
    token = idp.token("orders-app", scope="orders:read")
    assert gate.request("GET", "/orders", bearer(token)).status == 200

    idp.stop()

    for _ in range(20):
        assert gate.request("GET", "/orders", bearer(token)).status == 200
    # A token the gateway has never seen, signed with the cached key, passes too.
    fresh = crafted(keys, claims_for(idp))
    assert gate.request("GET", "/orders", bearer(fresh)).status == 200


def test_one_jwks_fetch_per_refresh_serves_both_workers(envoy_with, own_idp):
    idp, _ = own_idp
    ttl = 2
    config = gate_config(idp, jwks={"uri": idp.jwks_uri, "cluster": "idp", "default_ttl_seconds": ttl,
                                    "min_ttl_seconds": 1, "max_ttl_seconds": ttl})
    token = idp.token("orders-app", scope="orders:read")
    idp.reset_counts()
    started = time.time()
    gate = envoy_with(config, concurrency=2, idp_port=idp.port)

    # Keep both workers busy with concurrent connections for a few refresh periods.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while time.time() - started < 3 * ttl + 0.5:
            statuses = list(pool.map(lambda _: gate.request("GET", "/orders", bearer(token)).status, range(16)))
            assert statuses == [200] * 16
    elapsed = time.time() - started

    fetches = idp.counts().get("/jwks", 0)
    refreshes = int(elapsed // ttl) + 1
    assert 1 <= fetches <= refreshes + 1, f"{fetches} JWKS fetches for {refreshes} refresh periods"
    assert fetches < 2 * refreshes - 1, "every worker fetched on its own"


def test_keys_found_through_discovery(envoy_with, own_idp):
    idp, _ = own_idp
    idp.reset_counts()
    config = gate_config(idp, jwks=None, discovery={"cluster": "idp"})
    del config["providers"]["local"]["jwks"]
    gate = envoy_with(config, idp_port=idp.port)

    assert gate.request("GET", "/orders", bearer(idp.token("orders-app", scope="orders:read"))).status == 200
    counts = idp.counts()
    assert counts.get("/.well-known/openid-configuration", 0) >= 1
    assert counts.get("/jwks", 0) >= 1


def test_requests_wait_for_keys_rather_than_fail(envoy_with, own_idp, tmp_path):
    idp, keys = own_idp
    token = idp.token("orders-app", scope="orders:read orders:write")
    idp.stop()
    config = gate_config(idp, jwks={"uri": idp.jwks_uri, "cluster": "idp", "timeout_ms": 500})
    # Failed fetches are retried after ~1, ~2, then ~4 s: the default wait of 5 s can end
    # before the retry that finds a provider which took long to start on a loaded machine.
    config["keys_wait_timeout_ms"] = 15_000
    gate = envoy_with(config, idp_port=idp.port)

    # A request with a body arrives while the provider is still down: it is held, body and all.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(gate.request, "POST", "/orders", bearer(token), b'{"item": 1}', timeout=20)
        time.sleep(1.0)
        assert not pending.done(), "the request was answered before any key could be fetched"
        idp.start(port=idp.port, keys_file=harness.write_json(tmp_path / "again.json", keys))
        result = pending.result(timeout=25)

    seen = upstream_saw(result)
    assert seen["content-length"] == "11" and seen["x-user"] == "orders-app"


def test_no_keys_at_all_fails_closed(envoy_with, own_idp):
    idp, _ = own_idp
    token = idp.token("orders-app", scope="orders:read")
    idp.stop()
    config = gate_config(idp, jwks={"uri": idp.jwks_uri, "cluster": "idp", "timeout_ms": 200})
    config["keys_wait_timeout_ms"] = 1000
    gate = envoy_with(config, idp_port=idp.port)

    result = gate.request("GET", "/orders", bearer(token))

    assert result.status == 503
    assert reason(result) == "keys_unavailable"
    assert "retry-after" in result.headers


def test_a_token_is_verified_once_for_both_workers(envoy_with, idp):
    gate = envoy_with(gate_config(idp), concurrency=2)
    token = idp.token("orders-app", scope="orders:read")
    assert gate.request("GET", "/orders", bearer(token)).status == 200

    # Many connections, so both workers see the token; neither verifies its signature again.
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: gate.request("GET", "/orders", bearer(token)).status, range(64)))
    assert statuses == [200] * 64
    per_worker = [
        int(line.rsplit(" ", 1)[1])
        for line in gate.admin("/stats?filter=worker_.\\.downstream_cx_total").text.splitlines()
        if "listener.127.0.0.1_" in line
    ]
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker), per_worker

    verifications = [
        float(line.rsplit(" ", 1)[1])
        for line in gate.stats().splitlines()
        if line.startswith("tollgate_jwt_verifications{")
    ]
    assert verifications == [1.0], verifications
    # Each worker files tokens under a key it drew from Envoy's random_get; without one it would
    # keep none and say so.
    assert "gave no random bytes" not in gate.logs()
