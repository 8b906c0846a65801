"""tollgate demo: a real Envoy with the tollgate filter, a real OpenID provider, example requests.

    make demo        # builds the filter, then runs this with TOLLGATE_WASM set

What runs (all on 127.0.0.1, each process stopped by its PID when the demo ends):

- the OpenID provider of ``examples/idp`` (panva's oidc-provider) with the committed demo key
  ``examples/idp/demo-keys.json``, on port 9000 if free;
- the echo upstream of ``tests/e2e/echo.py``, which answers with what it received;
- Envoy (concurrency 2) with the tollgate wasm filter ($TOLLGATE_WASM) on port 8080 if free,
  admin on 9901 if free. The filter finds the provider's keys through its discovery document,
  fetched over the Envoy cluster ``idp``.

Then it sends the example requests (JWTs, an opaque token checked by introspection, a client
running into its rate limit), shows for each the equivalent ``curl`` line, the status, the
``WWW-Authenticate`` challenge, rate-limit headers and the problem body of a denial, or what the
upstream received for an allowed request, and checks every answer: the exit status is 1 when an
answer is not the expected one, so the demo doubles as a smoke test. With a terminal on stdin it
then prints how to call the gateway yourself and waits for Ctrl-C; otherwise it exits at once.

Standard library only; it reuses the end-to-end harness (``tests/e2e/harness.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import harness  # noqa: E402  (needs the path above)

DEMO_KEYS = ROOT / "examples" / "idp" / "demo-keys.json"

# Ports a reader can type; any that is taken is replaced by a free one.
PREFERRED_ENVOY_PORT = 8080
PREFERRED_ADMIN_PORT = 9901
PREFERRED_IDP_PORT = 9000
PREFERRED_ECHO_PORT = 8081

COLOR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def style(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if COLOR else text


def bold(text: str) -> str:
    return style(text, "1")


def dim(text: str) -> str:
    return style(text, "2")


def green(text: str) -> str:
    return style(text, "32")


def red(text: str) -> str:
    return style(text, "31")


def port_or_free(preferred: int) -> int:
    """``preferred`` if nothing listens on it on 127.0.0.1 right now, else a free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers themselves do: connections of an earlier run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    return harness.free_port()


# --------------------------------------------------------------------------------------------
# the gateway's configuration


REPORTING_LIMIT = 3  # requests per minute for the `reporting` client


def plugin_config(issuer: str) -> dict[str, Any]:
    """The tollgate configuration of the demo (see docs/configuration.md)."""
    return {
        "providers": {
            "demo": {
                "issuer": issuer,
                "audiences": ["api://orders", "api://opaque"],
                "token_type": "at+jwt",
                # {issuer}/.well-known/openid-configuration, fetched through cluster "idp".
                "discovery": {"cluster": "idp"},
                # JWTs by signature; any other token by RFC 7662 introspection, at the
                # introspection_endpoint of the discovery document, as client "introspector".
                "verify": "jwt_then_introspection",
                "introspection": {
                    "cluster": "idp",
                    "client_id": "introspector",
                    "client_secret": "introspector-secret",
                },
            }
        },
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": True},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"]},
            {"match": {"prefix": "/admin"}, "claims": {"roles": "admin"}},
            # Everything else matches no rule: a valid token is required (fail closed).
        ],
        "headers": {
            "claims": {
                "x-user": "sub",
                "x-client": "client_id",
                "x-roles": "roles",
            }
        },
        # The first policy whose `when` holds applies; otherwise (and for anonymous requests)
        # the default policy. Policy headers are set for the upstream like claim headers.
        "policies": [
            {
                "name": "reporting",
                "when": [{"claim": "client_id", "equals": "reporting"}],
                "headers": {"x-plan": "reporting"},
                "rate_limits": [{"name": "per-minute", "requests": REPORTING_LIMIT,
                                 "per": "1m", "key": "client_id"}],
            },
            {"name": "standard", "headers": {"x-plan": "standard"}},
        ],
        "default_policy": "standard",
        # RateLimit-Policy and RateLimit on allowed answers too, not only on 429s.
        "rate_limit_headers": True,
    }


# --------------------------------------------------------------------------------------------
# the example requests


def abbreviate(token: str) -> str:
    if len(token) <= 24:
        return token
    return f"{token[:12]}...{token[-8:]}"


def curl_line(port: int, method: str, path: str, headers: list[tuple[str, str]],
              body: Optional[str], tokens: dict[str, str]) -> str:
    """The curl command that sends the same request, with tokens abbreviated."""
    parts = ["curl", "-si"]
    if method != "GET" and body is None:
        parts += ["-X", method]
    for name, value in headers:
        for token, label in tokens.items():
            value = value.replace(token, label)
        parts += ["-H", f"{name}: {value}"]
    if body is not None:
        parts += ["-d", body]
    parts.append(f"http://127.0.0.1:{port}{path}")
    return " ".join(shlex.quote(p) for p in parts)


@dataclass
class Expect:
    status: int
    # For a denial: the body's `reason` and the challenge's `error` (None: no error parameter).
    reason: Optional[str] = None
    error: Optional[str] = None
    # For an allowed request: headers the upstream must have received (None: must be absent).
    upstream: dict[str, Optional[str]] = field(default_factory=dict)
    # Headers of the answer itself: name -> regular expression the value must match in full.
    answer: dict[str, str] = field(default_factory=dict)
    # For a denial: members the problem body must have, besides `reason`.
    problem: dict[str, Any] = field(default_factory=dict)

    @property
    def challenge(self) -> bool:
        """Whether a denial carries a WWW-Authenticate challenge: not a 429 (not an
        authentication problem) nor a 503 (try again later)."""
        return self.status not in (429, 503)


@dataclass
class Step:
    title: str
    method: str
    path: str
    expect: Expect
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Optional[str] = None
    note: str = ""


def challenge_error(challenge: str) -> Optional[str]:
    marker = 'error="'
    start = challenge.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return challenge[start:challenge.find('"', start)]


def check(step: Step, res: harness.HttpResult) -> list[str]:
    """What differs from the expected answer (empty: as expected)."""
    problems: list[str] = []
    exp = step.expect
    if res.status != exp.status:
        problems.append(f"status {res.status}, expected {exp.status}")
    for name, pattern in exp.answer.items():
        got = res.headers.get(name)
        if got is None or re.fullmatch(pattern, got) is None:
            problems.append(f"answer header {name}: {got!r}, expected /{pattern}/")
    if exp.status >= 400:
        try:
            body = res.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        if body.get("reason") != exp.reason:
            problems.append(f"reason {body.get('reason')!r}, expected {exp.reason!r}")
        for name, want in exp.problem.items():
            if body.get(name) != want:
                problems.append(f"problem {name} {body.get(name)!r}, expected {want!r}")
        challenge = res.headers.get("www-authenticate")
        if not exp.challenge:
            if challenge is not None:
                problems.append(f"a www-authenticate header: {challenge!r}")
        elif challenge is None:
            problems.append("no www-authenticate header")
        elif challenge_error(challenge) != exp.error:
            got = challenge_error(challenge)
            problems.append(f"challenge error {got!r}, expected {exp.error!r}")
    else:
        try:
            received = res.json().get("headers", {})
        except (ValueError, AttributeError):
            received = None
        if received is None:
            problems.append("the answer is not the echo upstream's")
        else:
            for name, want in exp.upstream.items():
                got = received.get(name)
                if got != want:
                    problems.append(f"upstream got {name}: {got!r}, expected {want!r}")
    return problems


IDENTITY_HEADERS = ("x-user", "x-client", "x-roles", "x-plan")
AUDIT_FIELDS = ("decision", "route", "reason", "provider", "source", "subject", "client_id",
                "policy", "limit", "token_sha256")
ANSWER_HEADERS = ("www-authenticate", "retry-after", "ratelimit-policy", "ratelimit")


def request_id(res: harness.HttpResult) -> Optional[str]:
    """The x-request-id Envoy gave the request: in a problem body, or as the upstream saw it."""
    try:
        body = res.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("request_id"), str):
        return body["request_id"]
    found = body.get("headers", {}).get("x-request-id")
    return found if isinstance(found, str) else None


def audit_event(
    envoy: harness.Envoy, rid: Optional[str], wait: float = 1.0
) -> Optional[dict[str, Any]]:
    """The filter's audit event for request ``rid``, from Envoy's log (shown, not checked)."""
    if rid is None:
        return None
    deadline = time.monotonic() + wait
    needle = f'"request_id":"{rid}"'
    while True:
        for line in envoy.logs().splitlines():
            if needle in line and "tollgate.decision" in line:
                try:
                    return dict(json.loads(line[line.index("{"):]))
                except ValueError:
                    return None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def show(step: Step, res: harness.HttpResult, problems: list[str]) -> None:
    reason = ""
    if res.status >= 400:
        try:
            reason = " " + str(res.json().get("reason"))
        except (ValueError, AttributeError):
            pass
    verdict = green("as expected") if not problems else red("UNEXPECTED: " + "; ".join(problems))
    print(f"   -> {bold(str(res.status))}{reason}   [{verdict}]")
    for name in ANSWER_HEADERS:
        if name in res.headers:
            print(f"   {name}: {res.headers[name]}")
    if res.status >= 400:
        print(f"   body ({res.headers.get('content-type', '?')}): {res.text[:600]}")
        return
    try:
        received = res.json().get("headers", {})
    except (ValueError, AttributeError):
        print(f"   body: {res.text[:300]!r}")
        return
    sent = {name.lower(): value for name, value in step.headers}
    print("   the upstream received:")
    for name in IDENTITY_HEADERS:
        value = received.get(name)
        shown = dim("(absent)") if value is None else value
        spoofed = f"   <- the client sent {name}: {sent[name]}; replaced" if name in sent else ""
        print(f"     {name}: {shown}{spoofed}")


def rate_limit_steps(reporting_token: str) -> list[Step]:
    """The reporting client's requests: REPORTING_LIMIT pass, the next one is refused."""
    auth = [("authorization", f"Bearer {reporting_token}")]
    policy = f'"per-minute";q={REPORTING_LIMIT};w=60'
    out = []
    for n in range(1, REPORTING_LIMIT + 1):
        out.append(Step(
            f"Rate limit: reporting's request {n} of {REPORTING_LIMIT + 1} to GET /orders "
            f"(policy reporting: {REPORTING_LIMIT} per minute, by client_id)",
            "GET", "/orders",
            Expect(200, upstream={"x-client": "reporting", "x-plan": "reporting"},
                   answer={"ratelimit-policy": re.escape(policy),
                           "ratelimit": rf'"per-minute";r={REPORTING_LIMIT - n};t=\d+'}),
            headers=auth,
            note="the first of reporting's requests to spend its budget: its 403s above did "
                 "not (refused requests are not counted)" if n == 1 else "",
        ))
    out.append(Step(
        f"Rate limit: reporting's request {REPORTING_LIMIT + 1} of {REPORTING_LIMIT + 1}: "
        "the budget is spent",
        "GET", "/orders",
        Expect(429, reason="rate_limited",
               answer={"retry-after": r"[1-9]\d*", "ratelimit-policy": re.escape(policy),
                       "ratelimit": r'"per-minute";r=0;t=[1-9]\d*'},
               problem={"policy": "reporting", "limit": "per-minute"}),
        headers=auth,
        note="429 with Retry-After and the RateLimit headers; no WWW-Authenticate: the token "
             "is fine, the client must slow down",
    ))
    return out


def steps(orders_token: str, writer_token: str, reporting_token: str,
          opaque_token: str) -> list[Step]:
    tampered = tamper(orders_token)
    identity = {
        "x-user": "orders-app",
        "x-client": "orders-app",
        "x-roles": "admin,buyer",
        "x-plan": "standard",
    }
    return [
        Step(
            "Anonymous: GET /health needs no token (rules[0] is anonymous)",
            "GET", "/health",
            Expect(200, upstream={"x-user": None, "x-plan": "standard"}),
            note="anonymous requests get the default policy, standard, and its x-plan header",
        ),
        Step(
            "No token: GET /orders",
            "GET", "/orders",
            Expect(401, reason="missing_token", error=None),
            note="RFC 6750: no error code in the challenge when no credentials were sent",
        ),
        Step(
            "Tampered token: orders-app's token with its payload rewritten to sub=admin",
            "GET", "/orders",
            Expect(401, reason="bad_signature", error="invalid_token"),
            headers=[("authorization", f"Bearer {tampered}")],
            note="the header and signature of the orders-app token of step 4, another payload",
        ),
        Step(
            "Valid token from orders-app (scope orders:read), and a spoofed x-user: admin",
            "GET", "/orders/42",
            Expect(200, upstream=identity),
            headers=[("authorization", f"Bearer {orders_token}"), ("x-user", "admin")],
            note="identity headers come from the verified token, never from the client",
        ),
        Step(
            "POST /orders with a reporting token (scope orders:read only)",
            "POST", "/orders",
            Expect(403, reason="insufficient_scope", error="insufficient_scope"),
            headers=[("authorization", f"Bearer {reporting_token}"),
                     ("content-type", "application/json")],
            body='{"item": "book", "qty": 1}',
        ),
        Step(
            "POST /orders with an orders-app token that has orders:write",
            "POST", "/orders",
            Expect(200, upstream=identity),
            headers=[("authorization", f"Bearer {writer_token}"),
                     ("content-type", "application/json")],
            body='{"item": "book", "qty": 1}',
        ),
        Step(
            "GET /admin with the reporting token (roles: [\"viewer\"], the rule wants admin)",
            "GET", "/admin",
            Expect(403, reason="claim_mismatch", error="insufficient_scope"),
            headers=[("authorization", f"Bearer {reporting_token}")],
        ),
        Step(
            "Opaque token from orders-app (resource api://opaque): checked by introspection",
            "GET", "/orders/7",
            Expect(200, upstream={"x-user": None, "x-client": "orders-app",
                                  "x-roles": "admin,buyer", "x-plan": "standard"}),
            headers=[("authorization", f"Bearer {opaque_token}")],
            note="not a JWT: the filter asks the provider's introspection endpoint (RFC 7662) as "
                 "client introspector and caches the answer; the answer has no sub",
        ),
        Step(
            "An opaque token the provider never issued",
            "GET", "/orders/7",
            Expect(401, reason="token_inactive", error="invalid_token"),
            headers=[("authorization", "Bearer not-issued-by-the-idp")],
            note="the introspection endpoint answers {\"active\": false}",
        ),
        *rate_limit_steps(reporting_token),
    ]


def show_metrics(envoy: harness.Envoy) -> None:
    """The filter's series on Envoy's /stats/prometheus (shown, not checked)."""
    try:
        text = envoy.stats()
    except OSError:
        return
    lines = [line for line in text.splitlines()
             if line.startswith("tollgate_") and not line.startswith("#")]
    print()
    print(bold("The filter's metrics") + f" (http://127.0.0.1:{envoy.admin_port}/stats/prometheus):")
    for line in sorted(lines):
        print("  " + line)


def tamper(token: str) -> str:
    """The same token with its payload's `sub` rewritten and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(harness.b64url_decode(payload))
    claims["sub"] = "admin"
    forged = harness.b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{forged}.{signature}"


# --------------------------------------------------------------------------------------------
# main


def print_try_it(envoy: harness.Envoy, idp: harness.Idp, log_dir: Path) -> None:
    gw = f"http://127.0.0.1:{envoy.port}"
    token_cmd = (
        f"curl -s -u orders-app:orders-app-secret -d grant_type=client_credentials "
        f"-d resource=api://orders -d scope=orders:read {idp.issuer}/token"
    )
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    print()
    print(bold("Try it yourself") + " (everything keeps running until Ctrl-C):")
    print()
    print("  # a token for orders-app (scopes: orders:read orders:write orders:admin;")
    print("  # reporting:reporting-secret may only get orders:read)")
    print(f"  {token_cmd}")
    print(f"  TOKEN=$({token_cmd} | {extract})")
    print()
    print(f"  curl -si {gw}/orders -H \"Authorization: Bearer $TOKEN\"")
    print(f"  curl -si {gw}/admin -H \"Authorization: Bearer $TOKEN\"")
    print(f"  curl -si -X POST {gw}/orders -H \"Authorization: Bearer $TOKEN\""
          "   # 403: no orders:write")
    print(f"  curl -si {gw}/health")
    print()
    print("  # the same with an opaque token (-d resource=api://opaque): checked by introspection;")
    print("  # a reporting:reporting-secret token may make 3 requests a minute, then 429")
    print()
    print(f"  Metrics:     http://127.0.0.1:{envoy.admin_port}/stats/prometheus  (tollgate_*)")
    print(f"  Discovery:   {idp.issuer}/.well-known/openid-configuration")
    assert envoy.service is not None
    print(f"  Audit lines: grep tollgate.decision {envoy.service.log_path}")
    print(f"  Logs:        {log_dir}")


class Demo:
    """The three processes and the example requests; ``stop()`` ends every process it started."""

    def __init__(self, wasm: str, log_dir: Path) -> None:
        self.wasm = wasm
        self.log_dir = log_dir
        self.idp = harness.Idp(log_dir)
        self.echo = harness.Echo(log_dir)
        self.envoy: Optional[harness.Envoy] = None

    def start(self) -> harness.Envoy:
        print(dim("starting the OpenID provider, the echo upstream and Envoy "
                  f"(logs: {self.log_dir})"))
        self.idp.start(port=port_or_free(PREFERRED_IDP_PORT), keys_file=DEMO_KEYS)
        self.echo.start(port=port_or_free(PREFERRED_ECHO_PORT))
        assert self.idp.port is not None and self.echo.port is not None
        self.envoy = harness.Envoy(
            self.log_dir,
            upstream_port=self.echo.port,
            idp_port=self.idp.port,
            plugin_config=plugin_config(self.idp.issuer),
            wasm=self.wasm,
            concurrency=2,
            port=port_or_free(PREFERRED_ENVOY_PORT),
            admin_port=port_or_free(PREFERRED_ADMIN_PORT),
        )
        self.envoy.start()
        return self.envoy

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        self.echo.stop()
        self.idp.stop()

    def running(self) -> bool:
        return all(
            s is not None and s.running
            for s in (self.idp.service, self.echo.service, self.envoy and self.envoy.service)
        )

    def show_and_check(self) -> int:
        """Sends every example request; returns how many answers were not the expected ones."""
        envoy, idp = self.envoy, self.idp
        assert envoy is not None
        print()
        print(f"{bold('Envoy + tollgate')}  http://127.0.0.1:{envoy.port}   "
              f"(admin http://127.0.0.1:{envoy.admin_port}, concurrency 2)")
        print(f"{bold('OpenID provider')}   {idp.issuer}   (the issuer; demo key demo-1)")
        print(f"{bold('echo upstream')}     http://127.0.0.1:{self.echo.port}")
        print()
        print(bold("The tollgate configuration:"))
        for line in json.dumps(plugin_config(idp.issuer), indent=2).splitlines():
            print("  " + line)

        orders_token = idp.token("orders-app", scope="orders:read")
        writer_token = idp.token("orders-app", scope="orders:read orders:write")
        reporting_token = idp.token("reporting", scope="orders:read")
        opaque_token = idp.token("orders-app", scope="orders:read", resource="api://opaque")
        tokens = (orders_token, writer_token, reporting_token, opaque_token)
        labels = {t: abbreviate(t) for t in tokens}
        print()
        print(bold("Tokens from the provider") + " (client_credentials grant; RFC 9068 JWTs for "
              "api://orders, an opaque token for api://opaque):")
        for name, token in (("orders-app, orders:read", orders_token),
                            ("orders-app, orders:read orders:write", writer_token),
                            ("reporting, orders:read", reporting_token),
                            ("orders-app, orders:read, opaque", opaque_token)):
            print(f"  {name}: {abbreviate(token)}")
            try:
                _, claims = harness.decode_jwt(token)
            except ValueError:
                print(f"    {dim('(opaque: only the provider knows what it stands for)')}")
                continue
            shown = {k: claims.get(k) for k in ("sub", "client_id", "scope", "roles", "tenant")}
            print(f"    {dim(json.dumps(shown))}")

        failures = 0
        all_steps = steps(orders_token, writer_token, reporting_token, opaque_token)
        for step in all_steps:
            for _, value in step.headers:
                token = value[len("Bearer "):] if value.startswith("Bearer ") else ""
                if token and token not in labels:
                    labels[token] = abbreviate(token)
        for i, step in enumerate(all_steps, 1):
            print()
            print(bold(f"{i}. {step.title}"))
            if step.note:
                print(dim(f"   ({step.note})"))
            print("   $ " + curl_line(envoy.port, step.method, step.path, step.headers,
                                      step.body, labels))
            try:
                res = envoy.request(step.method, step.path, step.headers, step.body, timeout=15)
            except OSError as err:
                print(red(f"   -> no answer: {err!r}"))
                failures += 1
                continue
            problems = check(step, res)
            failures += bool(problems)
            show(step, res, problems)
            event = audit_event(envoy, request_id(res))
            if event is not None:
                fields = " ".join(f"{k}={json.dumps(event.get(k))}" for k in AUDIT_FIELDS)
                print(dim(f"   audit: {fields}"))

        show_metrics(envoy)
        print()
        if failures:
            print(red(bold(f"{failures} of {len(all_steps)} answers were not the expected ones.")))
            if envoy.service is not None:
                print(f"Envoy's log: {envoy.service.log_path}")
        else:
            print(green(bold(f"All {len(all_steps)} answers were the expected ones.")))
        return failures

    def wait(self) -> None:
        """Until Ctrl-C (KeyboardInterrupt), or until a process stops by itself."""
        assert self.envoy is not None
        print_try_it(self.envoy, self.idp, self.log_dir)
        while self.running():
            time.sleep(0.5)
        print(red("a demo process stopped by itself; see its log in " + str(self.log_dir)))


def main() -> int:
    wasm = harness.wasm_path()
    if not wasm or not Path(wasm).is_file():
        print(f"demo: TOLLGATE_WASM must name the filter module (got {wasm!r}); run `make demo`",
              file=sys.stderr)
        return 2

    # SIGTERM and SIGHUP end the demo the way Ctrl-C does: through the `finally` below, which
    # stops every process by its PID.
    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    log_dir = harness.temp_dir("tollgate-demo-")
    demo = Demo(wasm, log_dir)
    failures: Optional[int] = None  # None: the checks did not finish
    code = 1
    try:
        demo.start()
        failures = demo.show_and_check()
        code = 1 if failures else 0
        if sys.stdin.isatty():
            demo.wait()
            code = 1  # a process died on its own
    except KeyboardInterrupt:
        print()
        print("stopping.")
        # Ctrl-C is how the interactive demo ends: then only the checks decide the status.
        code = 130 if failures is None else (1 if failures else 0)
    except harness.ServiceError as err:
        print(red(f"demo: {err}"), file=sys.stderr)
        code = 1
    finally:
        demo.stop()
        if code == 0:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"demo: logs kept in {log_dir}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
