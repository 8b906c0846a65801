"""Where a request's instructions go inside the module: `make bench-profile`.

`instructions.py` counts what Envoy executes per request, V8's generated code included, but
callgrind sees that code as anonymous memory: it says how much the module costs, not where.
V8 compiles every function of a module into one code space that starts with a jump table, one
slot per function in the order of the module's function indices (Envoy 1.40's V8: a 5-byte
`jmp rel32` padded to 8 bytes; another V8's layout is reported as no jump table found). This reads that
table from the counted process's memory (Valgrind runs Envoy's code at its own addresses), so
each function's start is known; each counted instruction belongs to the function that starts
at or before it, and the module's name section names it. The module profiled is a build that
keeps its name section (`make bench-profile` builds one); names do not change the code V8 runs.

It counts as `make bench` does (the same route, tokens and counted requests: `hot` is one token
repeated, `many` 10,000 tokens each sent once, then 2,000 counted), and prints the functions by
instructions per request, and what the module's code took in all; `--event I1mr` attributes the
simulated instruction-cache misses instead (`instructions.py`: nearly every line of the module's
code a request runs misses, so this is its code footprint per request, in 64-byte lines). A
hint, not a figure: the attributed costs are V8's code for a function, which includes what it
inlined.
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import harness  # noqa: E402
import instructions  # noqa: E402
import wasm_code  # noqa: E402

# Envoy 1.40's V8 (x64): a `jmp rel32` (5 bytes) padded to 8 bytes a slot, from the first byte
# of the code space on.
JUMP_TABLE_SLOT = 8
# Mappings larger than this are not V8's code space for one module (Valgrind's own are).
MAX_CODE_SPACE = 64 << 20


# What `--event` can attribute (callgrind's event names, with the cache simulation on).
EVENTS = {"Ir": "instructions", "I1mr": "instruction-cache misses", "D1mr": "data-read misses",
          "D1mw": "data-write misses"}


class ProfiledEnvoy(instructions.CountedEnvoy):
    """Callgrind also writes the cost of every instruction address."""

    callgrind_options = ("--dump-instr=yes",)


def jump_table(base: int, code: bytes, functions: int) -> Optional[list[int]]:
    """The start address of each of `functions` functions, from the jump table that begins
    `code` (mapped at `base`): every slot a `jmp rel32` into `code`. `None` when it is not one
    (another mapping, or another V8's layout)."""
    targets = []
    for at in range(0, functions * JUMP_TABLE_SLOT, JUMP_TABLE_SLOT):
        if at + 5 > len(code) or code[at] != 0xE9:
            return None
        target = base + at + 5 + struct.unpack_from("<i", code, at + 1)[0]
        if not base <= target < base + len(code):
            return None
        targets.append(target)
    return targets


def code_spaces(pid: int) -> list[tuple[int, bytes]]:
    """The process's anonymous executable mappings small enough to be a module's code space."""
    spaces = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 or "x" not in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if end - start > MAX_CODE_SPACE:
                continue
            try:
                mem.seek(start)
                spaces.append((start, mem.read(end - start)))
            except OSError:
                continue
    return spaces


def costs_by_address(dump: Path, event: str = "Ir") -> Counter:
    """The `event` (`Ir`: instructions executed; `I1mr`: instruction-cache misses, ...) at each
    address, from a callgrind dump written with `--dump-instr=yes --compress-pos=no` (a call's
    line is followed by the call's inclusive cost at the call site, which is not the caller's
    own; a line leaves out its trailing zero costs)."""
    costs: Counter = Counter()
    after_call = False
    column = None
    with dump.open(errors="replace") as lines:
        for line in lines:
            if after_call:
                after_call = False
                continue
            if line.startswith("events:"):
                names = line.split()[1:]
                if event not in names:
                    raise ValueError(f"the dump has no {event} (it has {' '.join(names)})")
                column = 1 + names.index(event)
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith("0x") and column is not None:
                fields = line.split()
                if len(fields) > column:
                    costs[int(fields[0], 16)] += int(fields[column])
    return costs


# V8's code for a function is a few times its wasm body at most; what lies further after the
# last function is V8's own (the wrappers that call the host, compiled at instantiation).
MACHINE_CODE_PER_WASM_BYTE = 8
BEFORE = "(V8: the jump table, before the module's functions)"
AFTER = "(V8: wrappers and stubs, after the module's functions)"


def attribute(costs: Counter, starts: list[int], sizes: list[int], names: dict[int, str],
              imported: int) -> Counter:
    """The costs inside the module's code space by function name: an address belongs to the
    function that starts at or before it, the last one within its estimated length."""
    order = sorted(range(len(starts)), key=starts.__getitem__)
    firsts = [starts[i] for i in order]
    last = order[-1] if order else 0
    last_end = firsts[-1] + MACHINE_CODE_PER_WASM_BYTE * sizes[last] + 256 if order else 0
    by_name: Counter = Counter()
    for address, cost in costs.items():
        at = bisect.bisect_right(firsts, address) - 1
        if at < 0:
            by_name[BEFORE] += cost
        elif at == len(order) - 1 and address >= last_end:
            by_name[AFTER] += cost
        else:
            index = imported + order[at]
            by_name[names.get(index, f"function {index}")] += cost
    return by_name


def inspect_module(module: Path, event: str = "Ir"):
    """An `instructions.count` inspection: the module's functions' costs (`event`) in the
    requests' dump."""
    wasm = module.read_bytes()
    imported, names = wasm_code.function_names(wasm)
    sizes = wasm_code.function_body_sizes(wasm)

    def inspect(envoy: instructions.CountedEnvoy, dump: Path) -> dict[str, Any]:
        assert envoy.service is not None
        for base, code in code_spaces(envoy.service.pid):
            starts = jump_table(base, code, len(sizes))
            if starts is None:
                continue
            costs = costs_by_address(dump, event)
            inside = Counter({a: c for a, c in costs.items() if base <= a < base + len(code)})
            return {"functions": attribute(inside, starts, sizes, names, imported),
                    "code_space": sum(inside.values())}
        raise harness.ServiceError(f"no jump table of {len(sizes)} functions in Envoy's code")

    return inspect


def demangle(name: str) -> str:
    """A Rust symbol, shortened for reading: `_ZN8tollgate4gate4Gate6decide17h...E` ->
    `tollgate::gate::Gate::decide` (v0 and other names are left as they are)."""
    if not name.startswith("_ZN"):
        return name
    parts, pos = [], 3
    while pos < len(name) and name[pos].isdigit():
        digits = re.match(r"\d+", name[pos:])
        assert digits is not None
        length = int(digits.group())
        pos += len(digits.group())
        parts.append(name[pos:pos + length])
        pos += length
    if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
        parts.pop()
    text = "::".join(parts)
    for code, char in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$C$", ","),
                       ("$u7b$", "{"), ("$u7d$", "}"), ("..", "::")):
        text = text.replace(code, char)
    # A path segment that starts with `$` or `{` is mangled with a `_` in front.
    return re.sub(r"(^|::)_(?=[<{])", r"\1", text)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", type=Path, required=True, help="the module, with its name section")
    ap.add_argument("--scenario", choices=("hot", "many"), default="hot")
    ap.add_argument("--config", default="tollgate",
                    choices=("tollgate", "tollgate-nocache", "tollgate-ratelimit",
                             "tollgate-ratelimit-exact"),
                    help="the bench's configuration (default: tollgate)")
    ap.add_argument("--many", type=int, default=bench.Params.many, help="tokens of `many`")
    ap.add_argument("--requests", type=int, default=bench.Params.counted_requests)
    ap.add_argument("--top", type=int, default=25, help="functions listed")
    ap.add_argument("--event", choices=EVENTS, default="Ir",
                    help="what is attributed: instructions (Ir, the default) or simulated L1 "
                         "misses (I1mr: instruction fetches, D1mr: data reads, D1mw: writes)")
    ap.add_argument("--at-least", type=float, default=0.0,
                    help="fail unless the module's code took this many of the event a request")
    ap.add_argument("--expect", default="",
                    help="fail unless a function listed has this in its name")
    args = ap.parse_args(argv)
    missing = instructions.tools_missing()
    if missing:
        print(f"profile: {missing}", file=sys.stderr)
        return 2
    params = bench.Params(counted_requests=args.requests)
    work = Path(tempfile.mkdtemp(prefix="tollgate-profile-"))
    (work / "logs").mkdir()
    try:
        ctx = bench.Context(params=params, wasm=args.wasm, empty_wasm=bench.DEFAULT_EMPTY_WASM,
                            work=work, dummy_port=harness.free_port())
        ctx.keys = bench.Keys()
        count = 1 if args.scenario == "hot" else args.many
        tokens = bench.mint_tokens(ctx.keys, "RS256", count, args.scenario, int(time.time()) + 3600)
        token_set = bench.write_tokens(work, args.scenario, tokens, bench.tamper(tokens[0]))
        rec = bench.measure_instructions(ctx, args.scenario, bench.CONFIGURATIONS[args.config],
                                         token_set, envoy_class=ProfiledEnvoy,
                                         inspect=inspect_module(args.wasm, args.event))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = rec["inspected"]
    requests = rec["requests"]
    in_module = found["code_space"] / requests
    what = EVENTS[args.event]
    print(f"{args.config}, {args.scenario}: {rec['per_request']:,} instructions a request in Envoy "
          f"(bare Envoy: ~105k), {in_module:,.0f} {what} in the module's code "
          f"({rec['not_ok']} not 2xx)")
    listed = [(demangle(name), cost) for name, cost in found["functions"].most_common(args.top)]
    for name, cost in listed:
        print(f"{cost / requests:10,.1f}  {name}")
    if rec["not_ok"] or in_module < args.at_least or not any(args.expect in n for n, _ in listed):
        print(f"profile: expected every answer 2xx, at least {args.at_least:,.0f} {what} a "
              f"request in the module and {args.expect!r} among its functions", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
