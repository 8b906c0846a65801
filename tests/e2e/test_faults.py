"""Faults of the identity provider, seen through the real gateway: the JWKS, the discovery
document and the introspection endpoint answer 500, 404, HTML, nothing, garbage, too much,
keys no verifier may use, or answer too late, or the provider is down altogether.

The provider is the real oidc-provider; its ``POST /_faults`` instrumentation
(examples/idp/README.md) makes one endpoint misbehave while the rest keeps working. Envoy runs
with two workers and the built filter. The stories:

- keys already fetched keep serving through every kind of fault (within the stale bound), and
  the filter goes back to the provider by itself once it behaves again;
- past the stale bound, or with no good keys ever, requests are refused with 503
  ``keys_unavailable`` and ``retry-after``, and the gateway recovers without a restart;
- discovery faults likewise;
- introspection faults refuse with 503 ``introspection_unavailable``, quickly.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, Optional

import pytest

import harness

AUDIENCE = "api://orders"
OPAQUE = "api://opaque"
INTROSPECTION = harness.Idp.INTROSPECTION_PATH
JWKS = harness.Idp.JWKS_PATH
DISCOVERY = harness.Idp.DISCOVERY_PATH


# --------------------------------------------------------------------------------------------
# configuration and helpers


def fast_keys(**overrides: Any) -> dict[str, Any]:
    """Key-source settings that make the cache turn over quickly: keys are refreshed every
    second, a fetch times out after 500 ms."""
    settings = {"cluster": "idp", "timeout_ms": 500, "default_ttl_seconds": 1, "min_ttl_seconds": 1,
                "max_ttl_seconds": 1, "stale_seconds": 60}
    settings.update(overrides)
    return settings


def gate_config(idp: harness.Idp, source: str = "jwks", keys_wait_timeout_ms: int = 1000,
                **key_settings: Any) -> dict[str, Any]:
    remote = fast_keys(**key_settings)
    if source == "jwks":
        remote["uri"] = idp.jwks_uri
    return {
        "providers": {"local": {"issuer": idp.issuer, "audiences": [AUDIENCE], "token_type": "at+jwt",
                                source: remote}},
        "rules": [{"match": {"prefix": "/health"}, "anonymous": True}],
        "headers": {"claims": {"x-user": "sub"}},
        "keys_wait_timeout_ms": keys_wait_timeout_ms,
    }


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def reason(result: harness.HttpResult) -> Optional[str]:
    if result.headers.get("content-type") != "application/problem+json":
        return None
    return result.json().get("reason")


def fresh_tokens(idp_keys: dict[str, Any], idp: harness.Idp, n: int) -> list[str]:
    """Valid access tokens signed with the provider's key, each never seen by the gateway
    (minted here, so that they can be had while the provider is down)."""
    key = idp_keys["keys"][0]
    now = int(time.time())
    return harness.mint([{
        "key": key, "header": {"typ": "at+jwt", "kid": key["kid"]},
        "claims": {"iss": idp.issuer, "aud": AUDIENCE, "sub": f"fresh-{i}", "iat": now, "exp": now + 600},
    } for i in range(n)])


class LogWatch:
    """Waits for lines of the filter's log that appear after the watch was (re)started."""

    def __init__(self, gate: harness.Envoy) -> None:
        self.gate = gate
        self.mark()

    def mark(self) -> None:
        self.offset = len(self.gate.logs())

    def wait(self, pattern: str, timeout: float = 8.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            new = self.gate.logs()[self.offset:]
            for line in new.splitlines():
                if regex.search(line):
                    return line
            if time.monotonic() > deadline:
                tail = "\n".join(line for line in new.splitlines() if "tollgate: provider" in line)
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s; provider lines:\n{tail}")
            time.sleep(0.05)


FAILED_FETCH = r"tollgate: provider local: (.*); keeping the last good keys"
GOOD_FETCH = r"tollgate: provider local: fetched \d+ key\(s\)"


@pytest.fixture(autouse=True)
def healthy_idp(idp: harness.Idp):
    """Every test starts and ends with a running, well-behaved provider."""
    if not (idp.service and idp.service.running):
        idp.start(port=idp.port)
    idp.faults({})
    yield
    if not (idp.service and idp.service.running):
        idp.start(port=idp.port)
    idp.faults({})


# --------------------------------------------------------------------------------------------
# JWKS faults

JWKS_FAULTS = [
    # (name, fault, what the filter's log must say about the failed fetch)
    ("500", {"status": 500}, r"JWKS answered HTTP 500"),
    ("404", {"status": 404}, r"JWKS answered HTTP 404"),
    ("HTML page, 200", {"body": "html"}, r"JWKS malformed"),
    ("HTML page, 502", {"status": 502, "body": "html"}, r"JWKS answered HTTP 502"),
    ("empty body", {"body": "empty"}, r"JWKS malformed"),
    ("garbage", {"body": "garbage"}, r"JWKS malformed"),
    ("over 256 KiB", {"body": "oversized"}, r"JWKS too large \(over 256 KiB\)"),
    ("only unusable keys", {"body": "unusable_keys"}, r"JWKS has no usable key"),
    # Envoy answers a call that timed out with a 504 of its own.
    ("slower than the timeout", {"delay_ms": 2000}, r"JWKS answered HTTP 504|no answer"),
]


def test_cached_keys_keep_serving_through_every_jwks_fault(envoy_with, idp, idp_keys):
    gate = envoy_with(gate_config(idp), idp_port=idp.port)
    pid = gate.service.pid
    tokens = iter(fresh_tokens(idp_keys, idp, len(JWKS_FAULTS) + 4))
    watch = LogWatch(gate)
    assert gate.request("GET", "/orders", bearer(next(tokens))).status == 200
    watch.wait(GOOD_FETCH)
    report = []

    def through(name: str, fault: Callable[[], None], expected: str, clear: Callable[[], None]) -> None:
        watch.mark()
        fetches = idp.counts().get(JWKS, 0)
        started = time.monotonic()
        fault()
        failure = watch.wait(FAILED_FETCH)
        assert re.search(expected, failure), f"{name}: {failure}"
        # Within the stale bound, a token the gateway has never seen verifies with the cached keys.
        during = gate.request("GET", "/orders", bearer(next(tokens)))
        assert during.status == 200, (name, during.status, during.text)
        asked = idp.counts().get(JWKS, 0) - fetches if idp.service and idp.service.running else None
        watch.mark()
        clear()
        watch.wait(GOOD_FETCH)
        report.append(f"  {name:<24} refresh failed ({re.search(FAILED_FETCH, failure).group(1)[:70]}), "
                      f"still served; recovered after {time.monotonic() - started:.1f}s"
                      + (f"; {asked} JWKS request(s) seen" if asked is not None else ""))
        if asked is not None:
            assert asked >= 1, f"{name}: the provider saw no JWKS request"

    for name, fault, expected in JWKS_FAULTS:
        through(name, lambda: idp.faults({"jwks": fault}), expected, lambda: idp.faults({}))
    # Envoy answers a call to a cluster with no reachable host with a 503 of its own.
    through("provider down", idp.stop, r"JWKS answered HTTP 503|no answer", lambda: idp.start(port=idp.port))

    print("\nJWKS faults with cached keys (TTL 1 s, stale 60 s):\n" + "\n".join(report))
    assert gate.service.pid == pid, "Envoy was restarted"
    assert not gate.wasm_failures(), gate.wasm_failures()[:10]
    assert gate.request("GET", "/orders", bearer(next(tokens))).status == 200


def test_unusable_keys_name_every_reason_and_are_never_used(envoy_with, idp, idp_keys):
    """A JWKS whose only keys are unusable (the real key marked use: enc, key_ops without
    verify, RSA 1024, oct, a point off the curve, a private key, bad base64url, e = 1) is a
    failed fetch: with no good keys before it, requests get 503 keys_unavailable."""
    idp.faults({"jwks": {"body": "unusable_keys"}})
    served = harness.http_get(idp.jwks_uri)[1]
    gate = envoy_with(gate_config(idp), idp_port=idp.port)
    watch = LogWatch(gate)
    watch.offset = 0
    token = fresh_tokens(idp_keys, idp, 1)[0]

    started = time.monotonic()
    refused = gate.request("GET", "/orders", bearer(token))
    took = time.monotonic() - started

    assert refused.status == 503, (refused.status, refused.text)
    assert reason(refused) == "keys_unavailable"
    assert refused.headers.get("retry-after") == "5"
    assert "www-authenticate" not in refused.headers
    assert took < 1.0 + 1.5, f"answered after {took:.1f}s (keys_wait_timeout_ms 1000)"
    failure = watch.wait(FAILED_FETCH)
    for why in ('use is "enc"', "key_ops lacks", "oct (symmetric) keys are not accepted from a remote JWKS",
                "private key member"):
        assert why in failure, f"{why!r} not in {failure}"
    # The oct key's secret is public (it is in the JWKS): an HS256 token made with it is refused
    # before any key is looked at, since remote keys never serve HMAC algorithms.
    oct_key = next(k for k in json.loads(served)["keys"] if k["kty"] == "oct")
    forged = harness.mint([{"key": None, "alg": "HS256", "hmac_secret_b64url": oct_key["k"],
                            "header": {"typ": "at+jwt", "kid": oct_key["kid"]},
                            "claims": {"iss": idp.issuer, "aud": AUDIENCE, "sub": "forged",
                                       "exp": int(time.time()) + 300}}])[0]
    hs = gate.request("GET", "/orders", bearer(forged))
    assert (hs.status, reason(hs)) == (401, "algorithm_not_allowed"), hs.text

    idp.faults({})
    recovered = poll_until_status(gate, token, 200, within=15)
    print(f"\nonly unusable keys: 503 after {took:.2f}s; recovered by itself {recovered:.1f}s after the fix")


def poll_until_status(gate: harness.Envoy, token: str, status: int, within: float) -> float:
    started = time.monotonic()
    while True:
        result = gate.request("GET", "/orders", bearer(token), timeout=10)
        if result.status == status:
            return time.monotonic() - started
        assert time.monotonic() - started < within, (
            f"still {result.status} {result.text[:200]} after {within}s")
        time.sleep(0.25)


def test_keys_past_the_stale_bound_are_refused_then_recover_without_restart(envoy_with, idp, idp_keys):
    ttl, stale, wait = 1, 2, 1.0
    gate = envoy_with(gate_config(idp, stale_seconds=stale, keys_wait_timeout_ms=int(wait * 1000)),
                      idp_port=idp.port)
    pid = gate.service.pid
    token = fresh_tokens(idp_keys, idp, 1)[0]
    watch = LogWatch(gate)
    assert gate.request("GET", "/orders", bearer(token)).status == 200
    watch.wait(GOOD_FETCH)
    fetched = time.monotonic()  # within a tick of the fetch itself
    idp.faults({"jwks": {"status": 503}})
    watch.mark()

    timeline = []
    while time.monotonic() - fetched < ttl + stale + wait + 3:
        sent = time.monotonic() - fetched
        result = gate.request("GET", "/orders", bearer(token))
        timeline.append((sent, time.monotonic() - fetched, result))
        if result.status == 503:
            break
        time.sleep(0.2)
    watch.wait(FAILED_FETCH, timeout=1)
    shown = [(round(s, 2), round(e, 2), r.status) for s, e, r in timeline]
    print(f"\nTTL {ttl}s, stale {stale}s, JWKS failing from the first refresh: (sent, answered, status) {shown}")

    served = [s for s, _, r in timeline if r.status == 200]
    last_sent, answered, refused = timeline[-1]
    assert refused.status == 503, shown
    assert (reason(refused), refused.headers.get("retry-after")) == ("keys_unavailable", "5"), refused.text
    assert max(served) > ttl + 0.3, f"no request was served from stale keys: {shown}"
    assert all(r.status == 200 for s, _, r in timeline if s < ttl + stale - 0.3), shown
    assert last_sent > ttl + stale - 0.5, f"refused before the stale bound: {shown}"
    assert answered - last_sent < wait + 1.0, f"the refusal took {answered - last_sent:.1f}s"

    idp.faults({})
    recovered = poll_until_status(gate, token, 200, within=20)
    print(f"recovered by itself {recovered:.1f}s after the provider was fixed")
    assert gate.service.pid == pid, "Envoy was restarted"


# --------------------------------------------------------------------------------------------
# discovery faults

DISCOVERY_FAULTS = [
    ("404", {"status": 404}, r"discovery answered HTTP 404"),
    ("HTML page", {"body": "html"}, r"discovery document malformed"),
    ("over 64 KiB", {"body": "oversized"}, r"discovery document too large"),
    ("another issuer", {"body": "wrong_issuer"}, r"discovery document names another issuer"),
    ("slower than the timeout", {"delay_ms": 2000}, r"discovery answered HTTP 504|discovery: no answer"),
]


def test_discovery_faults_refuse_without_keys_and_keep_cached_keys(envoy_with, idp, idp_keys):
    idp.faults({"discovery": {"status": 500}})
    idp.reset_counts()
    gate = envoy_with(gate_config(idp, source="discovery"), idp_port=idp.port)
    pid = gate.service.pid
    tokens = iter(fresh_tokens(idp_keys, idp, len(DISCOVERY_FAULTS) + 3))
    watch = LogWatch(gate)
    watch.offset = 0

    # No keys yet, and discovery fails: refused, and the JWKS was never asked for.
    token = next(tokens)
    refused = gate.request("GET", "/orders", bearer(token))
    assert (refused.status, reason(refused)) == (503, "keys_unavailable"), refused.text
    assert refused.headers.get("retry-after") == "5"
    assert "discovery answered HTTP 500" in watch.wait(FAILED_FETCH)
    counts = idp.counts()
    assert counts.get(DISCOVERY, 0) >= 1 and counts.get(JWKS, 0) == 0, counts
    idp.faults({})
    recovered = poll_until_status(gate, token, 200, within=15)

    # With keys: a failed refresh reads the discovery document again before the next JWKS
    # fetch; whatever is wrong with it, the cached keys keep serving.
    report = [f"  500 from the start         503 keys_unavailable, recovered {recovered:.1f}s after the fix"]
    for name, fault, expected in DISCOVERY_FAULTS:
        watch.wait(GOOD_FETCH)
        watch.mark()
        before = idp.counts().get(DISCOVERY, 0)
        idp.faults({"jwks": {"status": 500}, "discovery": fault})
        failure = watch.wait(r"tollgate: provider local: discovery.*keeping the last good keys")
        assert re.search(expected, failure), f"{name}: {failure}"
        assert idp.counts().get(DISCOVERY, 0) > before
        during = gate.request("GET", "/orders", bearer(next(tokens)))
        assert during.status == 200, (name, during.status, during.text)
        watch.mark()
        idp.faults({})
        watch.wait(GOOD_FETCH)
        report.append(f"  {name:<26} {re.search(FAILED_FETCH, failure).group(1)[:60]}; still served")
    print("\ndiscovery faults:\n" + "\n".join(report))
    assert gate.service.pid == pid


# --------------------------------------------------------------------------------------------
# introspection faults

INTROSPECTION_FAULTS = [
    ("500", {"status": 500}),
    ("404", {"status": 404}),
    ("HTML page", {"body": "html"}),
    ("empty body", {"body": "empty"}),
    ("garbage", {"body": "garbage"}),
    ("over 64 KiB", {"body": "oversized"}),
    ("slower than the timeout", {"delay_ms": 3000}),
]


def test_introspection_faults_refuse_quickly(envoy_with, idp):
    timeout_ms = 500
    config = gate_config(idp)
    provider = config["providers"]["local"]
    provider["audiences"] = [AUDIENCE, OPAQUE]
    provider["introspection"] = {"endpoint": idp.url(INTROSPECTION), "cluster": "idp", "client_id": "introspector",
                                 "client_secret": "introspector-secret", "timeout_ms": timeout_ms}
    gate = envoy_with(config, idp_port=idp.port)
    tokens = [idp.token("orders-app", resource=OPAQUE) for _ in range(len(INTROSPECTION_FAULTS) + 2)]
    limit = timeout_ms / 1000 + 1.0
    report = []

    def refused_quickly(name: str, token: str) -> None:
        started = time.monotonic()
        result = gate.request("GET", "/orders", bearer(token), timeout=10)
        took = time.monotonic() - started
        report.append(f"  {name:<24} {result.status} {reason(result)} after {took:.2f}s")
        assert result.status == 503, (name, result.status, result.text)
        assert reason(result) == "introspection_unavailable", (name, result.text)
        assert result.headers.get("retry-after") == "5"
        assert took < limit, f"{name}: answered after {took:.2f}s"

    assert gate.request("GET", "/orders", bearer(tokens[0])).status == 200
    for (name, fault), token in zip(INTROSPECTION_FAULTS, tokens[1:]):
        idp.faults({"introspection": fault})
        refused_quickly(name, token)
    idp.faults({})
    idp.stop()
    refused_quickly("provider down", tokens[-1])
    print(f"\nintrospection faults (timeout {timeout_ms} ms):\n" + "\n".join(report))

    idp.start(port=idp.port)  # opaque tokens live in the provider's memory: new ones
    assert gate.request("GET", "/orders", bearer(idp.token("orders-app", resource=OPAQUE))).status == 200
