"""The end-to-end pieces work on their own, without the filter: the real provider issues RFC 9068
JWT access tokens with the claims the other tests rely on, Envoy carries a request to the echo
upstream and back, and the provider's counters see what is asked of it."""

from __future__ import annotations

import time
from typing import Any

import harness


def test_idp_issues_rfc9068_jwt_with_custom_claims(idp: harness.Idp, idp_keys: dict[str, Any]):
    token = idp.token("orders-app", "orders-app-secret", "orders:read orders:write")
    header, claims = harness.decode_jwt(token)

    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": "e2e-1"}
    now = time.time()
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == "api://orders"
    assert claims["sub"] == "orders-app"
    assert claims["client_id"] == "orders-app"
    assert claims["scope"] == "orders:read orders:write"
    assert claims["iat"] <= now + 5 and claims["exp"] > now
    assert claims["jti"]
    assert claims["roles"] == ["admin", "buyer"]
    assert claims["tenant"] == {"id": "acme", "plan": "gold"}
    assert claims["https://tollgate.dev/department"] == "sales"

    # The key that signed it is the one the provider publishes.
    published = idp.jwks()["keys"]
    assert [k["kid"] for k in published] == ["e2e-1"]
    assert published[0]["n"] == idp_keys["keys"][0]["n"]
    assert "d" not in published[0]
    discovery = idp.discovery()
    assert discovery["issuer"] == idp.issuer
    assert discovery["jwks_uri"] == idp.issuer + idp.JWKS_PATH
    assert discovery["introspection_endpoint"] == idp.issuer + idp.INTROSPECTION_PATH


def test_idp_clients_scopes_and_opaque_tokens(idp: harness.Idp):
    # reporting may only read; asking for more is refused, not silently narrowed.
    _, claims = harness.decode_jwt(idp.token("reporting", scope="orders:read"))
    assert claims["roles"] == ["viewer"] and claims["scope"] == "orders:read"
    refused = idp.token_response("reporting", scope="orders:read orders:write")
    assert refused.status == 400 and refused.json()["error"] == "invalid_scope"
    assert idp.token_response("orders-app", secret="wrong").status == 401

    # api://opaque gets an opaque token that the introspector can introspect, until revoked.
    opaque = idp.token("orders-app", scope="orders:read", resource="api://opaque")
    assert opaque.count(".") == 0
    info = idp.introspect(opaque)
    assert info["active"] is True
    assert info["aud"] == "api://opaque" and info["client_id"] == "orders-app"
    assert info["roles"] == ["admin", "buyer"]
    assert idp.revoke(opaque, "orders-app") == 200
    assert idp.introspect(opaque) == {"active": False}


def test_request_through_envoy_reaches_echo(envoy_with, idp: harness.Idp):
    envoy = envoy_with(None)  # no filter
    token = idp.token("reporting", scope="orders:read")

    status, headers, body = envoy.request(
        "GET",
        "/orders/42?x=1",
        [("authorization", f"Bearer {token}"), ("x-probe", "a"), ("x-probe", "b")],
    )
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    echoed = harness.HttpResult(status, headers, body).json()
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/orders/42?x=1"
    assert echoed["headers"]["authorization"] == f"Bearer {token}"
    assert echoed["headers"]["x-probe"] == "a, b"
    assert echoed["headers"]["x-envoy-expected-rq-timeout-ms"]  # it did go through Envoy

    post = envoy.request("POST", "/orders", {"content-type": "application/json"}, '{"n": 1}')
    assert post.status == 200 and post.json()["body"] == '{"n": 1}'

    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="upstream"} 2' in envoy.stats()
    assert envoy.stat_values("cluster.upstream.upstream_rq_total") == {
        "cluster.upstream.upstream_rq_total": 2
    }


def test_idp_counts_requests_by_path(idp: harness.Idp):
    idp.reset_counts()
    assert idp.counts() == {}
    idp.token("orders-app", scope="orders:read")
    idp.token("orders-app", scope="orders:read")
    idp.jwks()
    assert idp.counts() == {"/token": 2, "/jwks": 1}
    idp.reset_counts()
    assert idp.counts() == {}
