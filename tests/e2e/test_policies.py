"""Opaque tokens, policies and rate limits, told as a platform team would try them: real Envoy
(two workers) loading the built tollgate.wasm, the real oidc-provider issuing opaque tokens it
introspects (RFC 7662) and JWT access tokens, and an upstream that echoes what reached it.

The provider's introspection endpoint can be made slow or failing (``idp.faults``); every test
clears the faults it set."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import re
import threading
import time
from typing import Any, Iterable

import pytest

import harness

ORDERS = "api://orders"
OPAQUE = "api://opaque"
INTROSPECTION = harness.Idp.INTROSPECTION_PATH


# --------------------------------------------------------------------------------------------
# configurations


def provider_config(idp: harness.Idp, audiences: Iterable[str] = (OPAQUE,), **introspection: Any) -> dict[str, Any]:
    """A provider that verifies JWTs by signature and every other token by introspection."""
    settings: dict[str, Any] = {
        "endpoint": idp.url(INTROSPECTION),
        "cluster": "idp",
        "client_id": "introspector",
        "client_secret": "introspector-secret",
        "cache_ttl_seconds": 2,
    }
    settings.update(introspection)
    return {
        "issuer": idp.issuer,
        "audiences": list(audiences),
        "verify": "jwt_then_introspection",
        "jwks": {"uri": idp.jwks_uri, "cluster": "idp"},
        "introspection": settings,
    }


IDENTITY_HEADERS = {
    "x-user": "sub",
    "x-client": "client_id",
    "x-roles": "roles",
    "x-department": "https://tollgate.dev/department",
}


def gate_config(idp: harness.Idp, audiences: Iterable[str] = (OPAQUE,), **introspection: Any) -> dict[str, Any]:
    return {
        "providers": {"local": provider_config(idp, audiences, **introspection)},
        "rules": [{"match": {"prefix": "/health"}, "anonymous": True}],
        "headers": {"claims": dict(IDENTITY_HEADERS)},
    }


ROLE_POLICIES = [
    {
        "name": "admins",
        "when": [{"claim": "roles", "contains": "admin"}],
        "headers": {"x-plan": "admin-plan"},
    },
    {
        "name": "viewers",
        "when": [{"claim": "roles", "contains": "viewer"}],
        "headers": {"x-plan": "viewer-plan"},
        "deny": [{"prefix": "/admin"}],
    },
]


def rate_limited_config(idp: harness.Idp, requests: int, **top: Any) -> dict[str, Any]:
    config = gate_config(idp, audiences=(ORDERS, OPAQUE))
    config["policies"] = [{
        "name": "partners",
        "rate_limits": [{"name": "per-minute", "requests": requests, "per": "1m", "key": "client_id"}],
    }]
    config.update(top)
    return config


# --------------------------------------------------------------------------------------------
# helpers


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def upstream_saw(result: harness.HttpResult) -> dict[str, str]:
    assert result.status == 200, (result.status, result.headers, result.text)
    return result.json()["headers"]


def reason(result: harness.HttpResult) -> str:
    assert result.headers.get("content-type") == "application/problem+json", (result.status, result.headers, result.text)
    return result.json()["reason"]


def opaque_token(idp: harness.Idp, client: str = "orders-app") -> str:
    token = idp.token(client, resource=OPAQUE)
    assert token.count(".") != 2, "the provider was expected to issue an opaque token"
    return token


def tollgate_metrics(gate: harness.Envoy) -> dict[str, float]:
    """The lines of ``/stats/prometheus`` that name tollgate: name (with its labels, if it has
    any) -> value. The filter's counters are wasm custom metrics; Envoy exports them under their
    own names, and the harness's ``stats_tags`` turn their ``.label.value`` pairs into labels,
    e.g. ``tollgate_denials{reason="rate_limited"}``."""
    out: dict[str, float] = {}
    for line in gate.stats().splitlines():
        if line.startswith("#") or "tollgate" not in line.lower():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name.removesuffix("{}")] = float(value)
        except ValueError:
            continue
    return out


def settled_metric(gate: harness.Envoy, series: str) -> float:
    """A tollgate metric once it stops moving (workers hand their counts to Envoy at their next
    tick); 0 if it does not appear within 5 s."""
    deadline, value = time.monotonic() + 5, 0.0
    while time.monotonic() < deadline:
        value = tollgate_metrics(gate).get(series, 0.0)
        if value:
            time.sleep(0.3)
            if tollgate_metrics(gate).get(series, 0.0) == value:
                break
        time.sleep(0.1)
    return value


def concurrently(n: int, threads: int, call) -> list[Any]:
    """``call(i)`` for i in range(n) on ``threads`` threads, released together."""
    start = threading.Barrier(min(n, threads))

    def run(i: int) -> Any:
        if i < threads:
            start.wait(timeout=10)
        return call(i)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, range(n)))


def start_gate(envoy_with, config: dict[str, Any], idp: harness.Idp) -> harness.Envoy:
    """A real Envoy with two workers and the filter, in front of the echo upstream."""
    return envoy_with(config, idp_port=idp.port)


@pytest.fixture(autouse=True)
def healthy_idp(idp):
    """Every test starts and ends with a well-behaved provider."""
    idp.faults({})
    yield
    idp.faults({})


# --------------------------------------------------------------------------------------------
# opaque tokens and introspection


def test_an_opaque_token_passes_through_introspection_with_its_identity(envoy_with, idp):
    gate = start_gate(envoy_with, gate_config(idp), idp)
    token = opaque_token(idp)
    idp.reset_counts()

    seen = upstream_saw(gate.request("GET", "/orders/7", {**bearer(token), "x-client": "spoofed", "x-roles": "root"}))

    assert seen["x-client"] == "orders-app", "mapped from the introspection answer's client_id"
    assert seen["x-roles"] == "admin,buyer", "mapped from the introspection answer's roles"
    assert seen["x-department"] == "sales"
    assert "x-user" not in seen, "the answer has no sub: nothing mapped, nothing spoofed"
    assert idp.counts().get(INTROSPECTION) == 1
    # Answered from the cache, on new connections (either worker): each audit line names the
    # token by its own SHA-256, which the worker keeps with the answer rather than recomputing.
    for i in range(6):
        again = gate.request("GET", "/orders/7", {**bearer(token), "x-request-id": f"opaque-again-{i}"})
        assert again.status == 200, (again.status, again.text)
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16]
    audited = gate.audit_events(f"opaque-again-{i}" for i in range(6))
    assert {e["token_sha256"] for e in audited.values()} == {fingerprint}
    assert {e["source"] for e in audited.values()} <= {"introspection", "introspection_cache"}
    # A token the provider never issued is refused.
    refused = gate.request("GET", "/orders/7", bearer("not-a-token-the-provider-knows"))
    assert refused.status == 401, (refused.status, refused.text)
    assert reason(refused) == "token_inactive"


def test_a_revoked_opaque_token_is_refused_once_its_cache_entry_ends(envoy_with, idp):
    gate = start_gate(envoy_with, gate_config(idp), idp)
    token = opaque_token(idp)

    first = gate.request("GET", "/orders", {**bearer(token), "x-request-id": "revoke-first"})
    introspected_at = time.monotonic()
    assert first.status == 200, first.text
    assert idp.revoke(token, "orders-app") == 200
    assert idp.introspect(token) == {"active": False}, "the provider no longer vouches for it"

    # Still cached (cache_ttl_seconds = 2): allowed without asking the provider again. Each
    # request is a new connection, so both workers answer, and keep the answer themselves.
    cached = gate.request("GET", "/orders", {**bearer(token), "x-request-id": "revoke-cached"})
    again = [gate.request("GET", "/orders", bearer(token)).status for _ in range(8)]
    cached_after = time.monotonic() - introspected_at
    assert cached_after < 1.8, f"too slow to see the cached answer ({cached_after:.1f}s)"
    assert cached.status == 200, cached.text
    assert again == [200] * 8, again

    # Once the entry's time is over, no worker's own copy of it answers either.
    time.sleep(max(0.0, introspected_at + 2.3 - time.monotonic()))
    refused = gate.request("GET", "/orders", {**bearer(token), "x-request-id": "revoke-refused"})
    later = [gate.request("GET", "/orders", bearer(token)).status for _ in range(8)]
    refused_after = time.monotonic() - introspected_at
    assert later == [401] * 8, later
    print(f"\nrevoked token: allowed from cache at {cached_after:.2f}s, refused at {refused_after:.2f}s")
    assert refused.status == 401, (refused.status, refused.text)
    assert reason(refused) == "token_inactive"
    assert refused.headers["www-authenticate"].startswith('Bearer realm="tollgate", error="invalid_token"')

    events = gate.audit_events(["revoke-first", "revoke-cached", "revoke-refused"])
    assert events["revoke-first"]["source"] == "introspection"
    assert events["revoke-cached"]["source"] == "introspection_cache"
    assert (events["revoke-refused"]["decision"], events["revoke-refused"]["reason"]) == ("deny", "token_inactive")


def test_a_slow_or_failing_introspection_endpoint_is_refused_quickly(envoy_with, idp):
    timeout_ms = 500
    gate = start_gate(envoy_with, gate_config(idp, timeout_ms=timeout_ms), idp)
    limit = timeout_ms / 1000 + 1.0

    idp.faults({"introspection": {"delay_ms": 3000}})
    started = time.monotonic()
    slow = gate.request("GET", "/orders", bearer(opaque_token(idp)), timeout=10)
    slow_took = time.monotonic() - started
    print(f"\nintrospection 3 s late, timeout {timeout_ms} ms: {slow.status} after {slow_took:.2f}s")
    assert slow.status == 503, (slow.status, slow.text)
    assert reason(slow) == "introspection_unavailable"
    assert slow_took < limit, f"answered after {slow_took:.2f}s, more than the timeout + 1 s"

    idp.faults({"introspection": {"status": 500}})
    started = time.monotonic()
    failing = gate.request("GET", "/orders", bearer(opaque_token(idp)), timeout=10)
    failing_took = time.monotonic() - started
    assert failing.status == 503, (failing.status, failing.text)
    assert reason(failing) == "introspection_unavailable"
    assert failing_took < limit

    idp.faults({})
    recovered = gate.request("GET", "/orders", bearer(opaque_token(idp)))
    assert recovered.status == 200, (recovered.status, recovered.text)


def test_concurrent_requests_with_a_new_token_cause_one_introspection_call(envoy_with, idp):
    gate = start_gate(envoy_with, gate_config(idp), idp)
    # Warm up both workers' connections to the provider with a token of another client.
    assert gate.request("GET", "/orders", bearer(opaque_token(idp, "reporting"))).status == 200
    token = opaque_token(idp)
    idp.reset_counts()
    # A slower answer, so that every request arrives while the one call is still in flight.
    idp.faults({"introspection": {"delay_ms": 400}})

    statuses = concurrently(50, 50, lambda i: gate.request("GET", "/orders", bearer(token), timeout=10).status)

    calls = idp.counts().get(INTROSPECTION, 0)
    print(f"\n50 concurrent requests with one new opaque token: {calls} introspection call(s), "
          f"statuses {sorted(set(statuses))}")
    assert statuses == [200] * 50
    assert calls == 1


def test_an_introspection_answer_is_kept_when_the_client_that_asked_gave_up(envoy_with, idp):
    # The call belongs to the request that made it; when that request is gone before the
    # answer comes, the answer still fills the cache, and the client's retry costs no call.
    gate = start_gate(envoy_with, gate_config(idp, timeout_ms=4000, cache_ttl_seconds=60), idp)
    assert gate.request("GET", "/orders", bearer(opaque_token(idp, "reporting"))).status == 200
    token = opaque_token(idp)
    idp.reset_counts()
    idp.faults({"introspection": {"delay_ms": 1000}})

    started = time.monotonic()
    with pytest.raises(OSError):  # the client gives up (timeout) and closes its connection
        gate.request("GET", "/orders", {**bearer(token), "x-request-id": "gave-up"}, timeout=0.3)
    assert idp.counts().get(INTROSPECTION) == 1, "the call was made before the client left"
    time.sleep(max(0.0, started + 2.0 - time.monotonic()))  # the answer came at ~1 s
    idp.faults({})
    retry = gate.request("GET", "/orders", {**bearer(token), "x-request-id": "retried"})

    calls = idp.counts().get(INTROSPECTION, 0)
    print(f"\na client gave up during its introspection; its retry: {retry.status}, {calls} call(s)")
    assert retry.status == 200, (retry.status, retry.text)
    assert calls == 1
    assert gate.audit_events(["retried"])["retried"]["source"] == "introspection_cache"


def test_many_new_opaque_tokens_at_once_cost_one_introspection_call_each(envoy_with, idp):
    # 120 new tokens, each sent four times at once on new connections (so to both workers),
    # into a cache of 1,024 answers: some tokens share the slot whose lease coalesces calls
    # and must wait for each other; none may be asked for twice, then or later.
    gate = start_gate(envoy_with, gate_config(idp, cache_entries=1024, cache_ttl_seconds=60), idp)
    tokens = [opaque_token(idp) for _ in range(120)]
    idp.reset_counts()

    def send(i: int) -> int:
        return gate.request("GET", "/orders", bearer(tokens[i // 4]), timeout=10).status

    first = concurrently(480, 32, send)
    calls = idp.counts().get(INTROSPECTION, 0)
    again = concurrently(480, 32, send)
    calls_after = idp.counts().get(INTROSPECTION, 0)
    print(f"\n120 new opaque tokens, 4 requests each at once: {calls} introspection calls; "
          f"480 more requests: {calls_after - calls} more")
    assert first == [200] * 480, sorted(set(first))
    assert again == [200] * 480, sorted(set(again))
    assert calls == 120
    assert calls_after == 120, "every answer stayed cached, in both workers"


# --------------------------------------------------------------------------------------------
# policies


def test_a_policy_mapped_from_a_role_reaches_the_upstream_as_a_header(envoy_with, idp):
    config = gate_config(idp, audiences=(ORDERS,))
    config["policies"] = ROLE_POLICIES
    gate = start_gate(envoy_with, config, idp)
    admin = idp.token("orders-app", scope="orders:read")
    viewer = idp.token("reporting", scope="orders:read")
    nobody = idp.token("introspector")  # roles: []
    spoof = {"x-plan": "platinum"}

    as_admin = upstream_saw(gate.request("GET", "/orders", {**bearer(admin), **spoof, "x-request-id": "pol-admin"}))
    as_viewer = upstream_saw(gate.request("GET", "/orders", {**bearer(viewer), **spoof, "x-request-id": "pol-viewer"}))
    denied = gate.request("GET", "/admin/users", {**bearer(viewer), **spoof, "x-request-id": "pol-denied"})
    admin_on_admin = upstream_saw(gate.request("GET", "/admin/users", bearer(admin)))
    no_policy = upstream_saw(gate.request("GET", "/orders", {**bearer(nobody), **spoof}))
    anonymous = upstream_saw(gate.request("GET", "/health", spoof))

    assert as_admin["x-plan"] == "admin-plan" and as_admin["x-roles"] == "admin,buyer"
    assert as_viewer["x-plan"] == "viewer-plan" and as_viewer["x-roles"] == "viewer"
    assert denied.status == 403, (denied.status, denied.text)
    assert reason(denied) == "policy_denied"
    assert admin_on_admin["x-plan"] == "admin-plan", "the deny is the viewers' alone"
    assert "x-plan" not in no_policy, "a client-sent x-plan never reaches the upstream"
    assert "x-plan" not in anonymous, "not even on anonymous routes"

    events = gate.audit_events(["pol-admin", "pol-viewer", "pol-denied"])
    assert (events["pol-admin"]["policy"], events["pol-admin"]["source"]) == ("admins", "jwt")
    assert events["pol-viewer"]["policy"] == "viewers"
    assert (events["pol-denied"]["policy"], events["pol-denied"]["status"], events["pol-denied"]["reason"]) == (
        "viewers", 403, "policy_denied")


# --------------------------------------------------------------------------------------------
# rate limits

RATELIMIT = re.compile(r'^"per-minute";r=(\d+);t=(\d+)$')


def per_worker_connections(gate: harness.Envoy) -> dict[str, int]:
    """Downstream connections accepted by each worker of the main listener."""
    return {
        name.split(".")[-2]: value
        for name, value in gate.stat_values(f"127.0.0.1_{gate.port}.worker_").items()
        if name.endswith(".downstream_cx_total")
    }


def test_a_budget_is_spent_exactly_whichever_worker_each_request_reaches(envoy_with, idp):
    # Ten tokens, each with a budget of its own (keyed by its jti) of 3 a minute, each sent four
    # times one after the other on new connections, so each request lands on either worker:
    # three pass and the fourth is refused, for every token. (Each worker used to charge at
    # its own tick clock, up to 100 ms from the other's, and GCRA then refused early.)
    config = rate_limited_config(idp, 3)
    # The most slots a limit may have, so that no two tokens share a counter (1 in 23,000).
    config["policies"][0]["rate_limits"][0].update(key="claim:jti", max_keys=1 << 20)
    gate = start_gate(envoy_with, config, idp)
    statuses = []
    for _ in range(10):
        token = idp.token("orders-app", scope="orders:read")
        statuses.append([gate.request("GET", "/orders", bearer(token)).status for _ in range(4)])
    print(f"\n3 a minute per token, 4 requests each: {statuses}")
    assert statuses == [[200, 200, 200, 429]] * 10


def test_anonymous_requests_and_tokens_without_the_claim_spend_the_client_address_budget(envoy_with, idp):
    # The client address is read from Envoy only for a budget that falls back to it: here the
    # anonymous route's requests (the default policy's) and a token with no `tenant` claim
    # share 127.0.0.1's budget.
    config = rate_limited_config(idp, 3, default_policy="partners")
    config["policies"][0]["rate_limits"][0]["key"] = "claim:tenant"
    gate = start_gate(envoy_with, config, idp)
    token = idp.token("orders-app", scope="orders:read")
    anonymous = [gate.request("GET", "/health").status for _ in range(2)]
    with_token = [gate.request("GET", "/orders", bearer(token)).status for _ in range(2)]
    print(f"\n3 a minute by tenant, else by address: anonymous {anonymous}, without tenant {with_token}")
    assert (anonymous, with_token) == ([200, 200], [200, 429])
    assert gate.request("GET", "/health").status == 429
    # Another address has a budget of its own: the address is read, not assumed.
    assert gate.request("GET", "/health", source="127.0.0.2").status == 200


def test_rate_limits_are_exact_across_two_workers(envoy_with, idp):
    budget, total = 25, 200
    gate = start_gate(envoy_with, rate_limited_config(idp, budget, rate_limit_headers=True), idp)
    token = idp.token("orders-app", scope="orders:read")

    started = time.monotonic()
    results = concurrently(
        total, 32, lambda i: gate.request("GET", "/orders", {**bearer(token), "x-request-id": f"rl-{i}"}),
    )
    elapsed = time.monotonic() - started

    allowed = [r for r in results if r.status == 200]
    limited = [r for r in results if r.status == 429]
    workers = per_worker_connections(gate)
    print(f"\nrate limit {budget}/min by client_id, {total} requests in {elapsed:.2f}s over workers {workers}: "
          f"{len(allowed)} allowed, {len(limited)} limited")
    others = [(i, r.status, r.headers, r.text[:300]) for i, r in enumerate(results) if r.status not in (200, 429)]
    assert not others, f"{len(others)} answers neither 200 nor 429, e.g. {others[:2]}"
    assert len([w for w, n in workers.items() if n > 0]) == 2, f"both workers must serve: {workers}"
    # GCRA: one more request every 60/budget s; the burst takes less than that, normally.
    refill = int(elapsed * budget / 60)
    assert budget <= len(allowed) <= budget + refill
    if refill == 0:
        assert len(allowed) == budget

    for r in limited:
        assert int(r.headers["retry-after"]) >= 1, r.headers
        assert r.headers["ratelimit-policy"] == '"per-minute";q=25;w=60', r.headers
        match = RATELIMIT.match(r.headers["ratelimit"])
        assert match and match.group(1) == "0", r.headers
        assert 1 <= int(match.group(2)) <= 60, r.headers
        assert reason(r) == "rate_limited"

    # rate_limit_headers: allowed answers carry the remaining budget.
    remaining = []
    for r in allowed:
        match = RATELIMIT.match(r.headers.get("ratelimit", ""))
        assert match, r.headers
        remaining.append(int(match.group(1)))
    # Each worker reads the clock before its compare-and-swap, so two answers may report the budget
    # a fraction of a unit apart (one value twice, its neighbour missing); the count above is what
    # must be exact.
    assert min(remaining) == 0 and max(remaining) == budget - 1, sorted(remaining)
    if refill == 0:
        assert len(set(remaining)) >= budget - 2, f"each allowed request used one unit: {sorted(remaining)}"

    # The budget is the client's: another client still has its own.
    other = gate.request("GET", "/orders", bearer(idp.token("reporting", scope="orders:read")))
    assert other.status == 200, (other.status, other.text)

    ids = [f"rl-{i}" for i, r in enumerate(results) if r.status == 429][:3]
    for event in gate.audit_events(ids).values():
        assert (event["decision"], event["status"], event["reason"]) == ("deny", 429, "rate_limited")
        assert (event["policy"], event["limit"]) == ("partners", "per-minute")


def test_a_batched_quota_spares_the_shared_counter_and_never_grants_more_than_its_budget(envoy_with, idp):
    # A busy client with a monthly quota of 1500 and `batch: 40`: each worker takes requests from
    # the shared counter in batches and spends them itself. 1600 requests at once over both
    # workers: never more than the budget passes, at most a batch per worker is lost to it, and
    # the counter is updated once per batch instead of once per request.
    budget, batch, total = 1500, 40, 1600
    config = gate_config(idp, audiences=(ORDERS, OPAQUE))
    config["policies"] = [{
        "name": "partners",
        "quotas": [{"name": "monthly", "requests": budget, "per": "month", "key": "client_id", "batch": batch}],
    }]
    gate = start_gate(envoy_with, config, idp)
    token = idp.token("orders-app", scope="orders:read")

    results = concurrently(total, 32, lambda i: gate.request("GET", "/orders", bearer(token)))
    statuses = [r.status for r in results]
    allowed = statuses.count(200)
    workers = per_worker_connections(gate)
    assert set(statuses) <= {200, 429}, [(r.status, r.text[:200]) for r in results if r.status not in (200, 429)][:2]
    assert len([w for w, n in workers.items() if n > 0]) == 2, f"both workers must serve: {workers}"
    assert budget - 2 * batch <= allowed <= budget, allowed
    assert gate.request("GET", "/orders", bearer(token)).status == 429, "the quota stays spent"

    batches = settled_metric(gate, 'tollgate_ratelimit_batches{policy="partners",limit="monthly"}')
    print(f"\nquota {budget} with batch {batch}, {total} requests over workers {workers}: "
          f"{allowed} allowed, {batches:g} batches taken")
    # ~110: batches double to 40, then shrink to a sixteenth of what is left as the quota runs out.
    assert 0 < batches <= allowed / 8, f"{batches} counter updates for {allowed} requests"


def test_a_batched_rate_limit_stays_within_a_batch_per_worker_of_its_budget(envoy_with, idp):
    # A rate of 1000 a minute (bursts of 1000) with `batch: 50`: 1300 requests at once over both
    # workers. GCRA alone would pass the burst plus what refills meanwhile; batches may lose or
    # add at most a batch per worker (and no batch exceeds a sixteenth of what is left).
    budget, batch, total = 1000, 50, 1300
    config = rate_limited_config(idp, budget)
    config["policies"][0]["rate_limits"][0]["batch"] = batch
    gate = start_gate(envoy_with, config, idp)
    token = idp.token("orders-app", scope="orders:read")

    started = time.monotonic()
    statuses = concurrently(total, 32, lambda i: gate.request("GET", "/orders", bearer(token)).status)
    elapsed = time.monotonic() - started
    allowed = statuses.count(200)
    workers = per_worker_connections(gate)
    refill = int(elapsed * budget / 60) + 1
    batches = settled_metric(gate, 'tollgate_ratelimit_batches{policy="partners",limit="per-minute"}')
    print(f"\nrate {budget}/min with batch {batch}, {total} requests in {elapsed:.2f}s over workers {workers}: "
          f"{allowed} allowed, {batches:g} batches taken")
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert len([w for w, n in workers.items() if n > 0]) == 2, f"both workers must serve: {workers}"
    assert budget - 2 * batch <= allowed <= budget + refill + 2 * batch, (allowed, refill)
    # ~100 here; what refills while the requests last comes a request at a time.
    assert 0 < batches <= allowed / 3, f"{batches} counter updates for {allowed} requests"


# --------------------------------------------------------------------------------------------
# metrics and audit


def test_decisions_are_counted_in_envoy_stats_and_audited(envoy_with, idp):
    config = rate_limited_config(idp, 3)
    config["policies"][0]["when"] = [{"claim": "client_id", "equals": "reporting"}]
    gate = start_gate(envoy_with, config, idp)
    jwt = idp.token("orders-app", scope="orders:read")
    opaque = opaque_token(idp)
    limited_jwt = idp.token("reporting", scope="orders:read")

    def send(request_id: str, headers: dict[str, str]) -> tuple[str, harness.HttpResult]:
        return request_id, gate.request("GET", "/orders", {**headers, "x-request-id": request_id})

    sent = [
        send("m-jwt", bearer(jwt)),
        send("m-opaque", bearer(opaque)),
        send("m-cached", bearer(opaque)),
        send("m-missing", {}),
        send("m-bad", bearer("x.y.z")),
        *(send(f"m-limit-{i}", bearer(limited_jwt)) for i in range(5)),
    ]
    statuses = [r.status for _, r in sent]
    assert statuses == [200, 200, 200, 401, 401, 200, 200, 200, 429, 429], sent
    # rate_limit_headers is off: only the 429 answers carry RateLimit headers.
    assert all("ratelimit" not in r.headers for _, r in sent if r.status == 200)

    metrics = tollgate_metrics(gate)
    print("\n/stats/prometheus lines naming tollgate:" if metrics else "\n/stats/prometheus: NO line names tollgate")
    for name, value in sorted(metrics.items()):
        print(f"  {name} {value:g}")
    assert metrics, "no tollgate metric in /stats/prometheus"
    expected = {
        # requests by provider and decision ("none": refused before a provider was known)
        'tollgate_requests{provider="local",decision="allow"}': 6,
        'tollgate_requests{provider="local",decision="deny"}': 2,
        'tollgate_requests{provider="none",decision="deny"}': 2,
        # denials by reason
        'tollgate_denials{reason="missing_token"}': 1,
        'tollgate_denials{reason="malformed_token"}': 1,
        'tollgate_denials{reason="rate_limited"}': 2,
        # introspection calls, cache hits and misses, by provider
        'tollgate_introspection_calls{provider="local"}': 1,
        'tollgate_introspection_cache_misses{provider="local"}': 1,
        'tollgate_introspection_cache_hits{provider="local"}': 1,
        # rate-limited requests by policy and limit
        'tollgate_ratelimited{policy="partners",limit="per-minute"}': 2,
    }
    assert {name: metrics.get(name) for name in expected} == expected
    assert metrics.get('tollgate_jwks_fetches{provider="local"}', 0) >= 1, "JWKS fetches"

    events = gate.audit_events([rid for rid, _ in sent])
    assert events["m-bad"]["reason"] == "malformed_token"
    assert (events["m-jwt"]["source"], events["m-opaque"]["source"], events["m-cached"]["source"]) == (
        "jwt", "introspection", "introspection_cache")
    assert events["m-limit-0"]["policy"] == "partners" and events["m-jwt"].get("policy") is None
    assert (events["m-limit-4"]["status"], events["m-limit-4"]["policy"], events["m-limit-4"]["limit"]) == (
        429, "partners", "per-minute")
    assert opaque not in gate.logs() and jwt not in gate.logs(), "tokens never reach the log"


def with_vm_environment(variables: dict[str, str]):
    """A bootstrap hook that gives the filter's VM these environment variables, as a gateway
    fills them from a Kubernetes Secret (Envoy: vm_config.environment_variables)."""

    def hook(bootstrap: dict[str, Any]) -> None:
        for listener in bootstrap["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for network_filter in chain["filters"]:
                    for http_filter in network_filter["typed_config"]["http_filters"]:
                        if http_filter["name"] == "envoy.filters.http.wasm":
                            vm = http_filter["typed_config"]["config"]["vm_config"]
                            vm["environment_variables"] = {"key_values": variables}

    return hook


def test_the_introspection_secret_can_come_from_the_environment(envoy_with, idp):
    config = gate_config(idp, client_secret=None, client_secret_env="TOLLGATE_INTROSPECTION_SECRET")
    del config["providers"]["local"]["introspection"]["client_secret"]
    gate = envoy_with(
        config,
        idp_port=idp.port,
        bootstrap_hook=with_vm_environment({"TOLLGATE_INTROSPECTION_SECRET": "introspector-secret"}),
    )
    assert gate.request("GET", "/orders", bearer(opaque_token(idp))).status == 200

    # Without the variable the configuration is refused at load, naming the field.
    with pytest.raises(harness.ServiceError) as failure:
        envoy_with(config, idp_port=idp.port, name="envoy-without-secret")
    assert "providers.local.introspection.client_secret_env: the environment has no TOLLGATE_INTROSPECTION_SECRET" in str(
        failure.value
    )
