"""Instructions per request: Envoy run under Valgrind's callgrind, its work counted, not timed.

Why a count beside the CPU time: on this shared 2-core machine the CPU time of a request swings
by up to 2x from one minute to the next, and a hot-path target is a ratio of two small
differences of such figures (tollgate over bare, the empty filter over bare), so its verdict
flips from run to run on the same code. The number of instructions Envoy executes for a request
does not depend on the machine's speed: it repeats to within 0.1% from one run to the next. It is
not time either (a cache miss costs no instruction, and a host call's instructions are not all
equally fast), so the bench reports both, and checks the hot-path targets on both.

How: Envoy (``--concurrency 1``, the bench's route and filters) starts under ``valgrind
--tool=callgrind``; V8's generated code, the filter's included, is counted like any other
(``--smc-check=all-non-file`` lets Valgrind see code V8 writes). Envoy starts and is warmed with
the instrumentation off (V8 compiling the module under it takes minutes instead of seconds).
Then one keep-alive connection sends ``warm`` requests, callgrind's instrumentation is turned on
(``callgrind_control -i on``), a few more requests go through it, the counters are zeroed
(``-z``), ``requests`` requests are sent, and the counters are dumped (``-d``): the dump's total
over the requests is the figure. Every thread of Envoy is counted, as the CPU figure counts
them.

What Envoy does on its timers is work per second, not per request: idle, bare Envoy runs ~0.1M
instructions a second, and tollgate's tick (every 100 ms: metrics handed over, keys and waiting
requests looked after) ~0.12M more. Under Valgrind a request takes ~50 times as long as it does
natively, so that work would weigh ~50 times as much per request as it does in production (a
few hundred instructions per request for tollgate, noise that also varied with the machine's
speed). So before the requests, Envoy is counted idle for ``IDLE_SECONDS``, and the idle rate
times the requests' duration is taken off their total.

What a count leaves out: callgrind also simulates the first-level caches (``--cache-sim=yes``,
this machine's L1 sizes; instructions are counted the same). Between two requests Envoy runs far
more code than an L1 instruction cache holds, and a filter's code runs about once per request,
so nearly every line of it a request runs is a miss: its instructions cost more time than
Envoy's own, which loop over lines already fetched. The misses per request (instruction fetches,
data reads and writes) are reported beside the count, with the same timers taken off. Standard
library only.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import harness

# Requests sent with the instrumentation on before the count: Valgrind translates the code they
# run anew once, and that one-time work is not a request's.
SETTLE_REQUESTS = 20
# Seconds Envoy is counted idle, for the instructions its timers run per second.
IDLE_SECONDS = 5.0

def tools_missing() -> Optional[str]:
    """Why the count cannot run here (`None`: it can)."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make bench-tools installs Debian's valgrind)"
    return None


class CountedEnvoy(harness.Envoy):
    """An Envoy whose process is Valgrind's callgrind running Envoy: same PID, same stop."""

    out_file: Path
    # More of callgrind's options (module_profile.py: costs per instruction address).
    callgrind_options: tuple[str, ...] = ()

    def _argv(self, mode: str = "serve") -> list[str]:
        self.out_file = self.log_dir / f"{self.name}.callgrind"
        return [
            "valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no",
            f"--callgrind-out-file={self.out_file}", "--dump-line=no", "--cache-sim=yes",
            "--compress-strings=no", "--compress-pos=no", *self.callgrind_options,
        ] + super()._argv(mode)


def send(port: int, headers: Sequence[dict[str, str]], count: int, start: int = 0) -> int:
    """`count` GET requests over one keep-alive connection, headers taken round robin from
    `start`; the number answered 2xx."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    ok = 0
    try:
        for i in range(count):
            conn.request("GET", "/bench", headers=headers[(start + i) % len(headers)])
            res = conn.getresponse()
            res.read()
            ok += 200 <= res.status < 300
    finally:
        conn.close()
    return ok


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def dumped_totals(out_file: Path, number: int, timeout: float = 60.0) -> dict[str, int]:
    """The totals of callgrind's dump `number` (1, 2, ...) of `out_file`, by event (`Ir`:
    instructions; with the cache simulation, `I1mr`, `D1mr`, `D1mw`: first-level misses)."""
    deadline = time.monotonic() + timeout
    events = re.compile(r"^events: (.+)$", re.M)
    totals = re.compile(r"^(?:summary|totals): (.+)$", re.M)
    dump = out_file.parent / f"{out_file.name}.{number}"
    while True:
        if dump.exists():
            text = dump.read_text(errors="replace")
            names, found = events.search(text), totals.search(text)
            if names and found:
                # A total the dump leaves out at the end of its line is 0.
                return dict(zip(names.group(1).split(), map(int, found.group(1).split())))
        if time.monotonic() > deadline:
            raise harness.ServiceError(f"callgrind wrote no dump of {out_file}")
        time.sleep(0.2)


def l1_misses(totals: dict[str, int]) -> int:
    """First-level cache misses of a dump's totals: instruction fetches, data reads and writes."""
    return sum(totals.get(event, 0) for event in ("I1mr", "D1mr", "D1mw"))


def count(start_envoy: Callable[[type], harness.Envoy], headers: Sequence[dict[str, str]], *,
          warm: int, requests: int, envoy_class: type = CountedEnvoy,
          inspect: Optional[Callable[[CountedEnvoy, Path], Any]] = None) -> dict[str, Any]:
    """Instructions per request of one configuration: `warm` requests, then `requests` counted
    (the requests continue round robin through `headers` where the warm-up stopped).
    `inspect(envoy, dump)` looks at the running Envoy and the requests' dump before it stops;
    what it returns is the record's `inspected`."""
    envoy = start_envoy(envoy_class)
    assert isinstance(envoy, CountedEnvoy) and envoy.service is not None
    pid = envoy.service.pid
    try:
        warmed = send(envoy.port, headers, warm)
        callgrind(pid, "-i", "on")
        settled = send(envoy.port, headers, SETTLE_REQUESTS, start=warm)
        callgrind(pid, "-z")
        started = time.monotonic()
        time.sleep(IDLE_SECONDS)
        callgrind(pid, "-d")
        idle_seconds = time.monotonic() - started
        idle = dumped_totals(envoy.out_file, 1)
        callgrind(pid, "-z")
        started = time.monotonic()
        ok = send(envoy.port, headers, requests, start=warm + SETTLE_REQUESTS)
        callgrind(pid, "-d")
        busy_seconds = time.monotonic() - started
        total = dumped_totals(envoy.out_file, 2)
        running = envoy.running
        dump = envoy.out_file.parent / f"{envoy.out_file.name}.2"
        inspected = inspect(envoy, dump) if inspect else None
    finally:
        envoy.stop()
        for f in envoy.log_dir.glob(envoy.out_file.name + "*"):
            f.unlink()
    if not running:
        raise harness.ServiceError(f"{envoy.name}: Envoy died while counted")

    def per_request(counted: int, counted_idle: int) -> int:
        # Less what the timers ran meanwhile, at the idle rate.
        timers = counted_idle / idle_seconds * busy_seconds
        return round(max(counted - timers, 0) / requests)

    return {
        "requests": requests,
        "not_ok": (warm - warmed) + (SETTLE_REQUESTS - settled) + (requests - ok),
        "instructions": total["Ir"],
        "seconds": round(busy_seconds, 2),
        "idle_per_second": round(idle["Ir"] / idle_seconds),
        "per_request_with_timers": round(total["Ir"] / requests),
        "per_request": per_request(total["Ir"], idle["Ir"]),
        "l1_misses_per_request": per_request(l1_misses(total), l1_misses(idle)),
        "i1_misses_per_request": per_request(total.get("I1mr", 0), idle.get("I1mr", 0)),
        **({"inspected": inspected} if inspect else {}),
    }
