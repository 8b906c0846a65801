"""The benchmark's own arithmetic, on runs it did not measure: a target's verdict is only as
good as the figures it is computed from."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench  # noqa: E402
import instructions  # noqa: E402


def memory_run(config: str, round_no: int, idle_mib: float, after_mib: float) -> dict:
    return {"config": config, "round": round_no, "rss_idle_kib": idle_mib * 1024,
            "rss_kib": after_mib * 1024}


def test_the_memory_target_splits_into_terms_that_add_up_to_it_from_the_median_round():
    memory = []
    # Round 2 is the median one for tollgate over bare (60, 70 and 80 MiB over it).
    for round_no, tollgate_after in ((1, 130.0), (2, 140.0), (3, 150.0)):
        memory += [
            memory_run("bare", round_no, 64.0, 70.0),         # grew 6
            memory_run("empty-wasm", round_no, 88.0, 89.0),   # idle 24 over bare's idle
            memory_run("jwt_authn", round_no, 65.0, 185.0),
            memory_run("tollgate", round_no, 108.0, tollgate_after),  # idle 20 over the empty
        ]
    terms = bench.memory_terms(memory)
    assert terms == {"round": 2, "total": 70.0, "empty": 24.0, "idle": 20.0, "grew": 26.0}
    assert terms["empty"] + terms["idle"] + terms["grew"] == terms["total"]


def test_the_module_term_splits_into_allocator_code_and_the_rest_where_recorded():
    memory = [memory_run("bare", 1, 64.0, 70.0), memory_run("empty-wasm", 1, 88.0, 89.0),
              memory_run("tollgate", 1, 108.0, 140.0)]
    memory[1].update(allocator_idle={"total_physical_bytes": 23 * bench.MiB,
                                     "allocated": 10 * bench.MiB}, code_idle_kib=400)
    memory[2].update(allocator_idle={"total_physical_bytes": 39 * bench.MiB,
                                     "allocated": 16 * bench.MiB}, code_idle_kib=2960)
    terms = bench.memory_terms(memory)
    assert (terms["idle"], terms["idle_allocator"], terms["idle_code"]) == (20.0, 16.0, 2.5)
    assert (terms["idle_allocated"], terms["idle_rest"]) == (6.0, 1.5)
    # Runs of an older results.json, without the split, keep the three terms alone.
    del memory[2]["code_idle_kib"]
    assert "idle_allocator" not in bench.memory_terms(memory)


def test_compiled_code_is_the_resident_part_of_anonymous_executable_mappings():
    smaps = (
        "55d0-55e0 r-xp 00000000 08:01 1234 /usr/bin/envoy\n"
        "Rss:                1000 kB\n"
        "7f00-7f10 rwxp 00000000 00:00 0 \n"
        "Size:               3496 kB\n"
        "Rss:                2804 kB\n"
        "VmFlags: rd wr ex mr mw me ac\n"
        "7f20-7f30 rw-p 00000000 00:00 0 \n"
        "Rss:               30680 kB\n"
        "7f40-7f50 r-xp 00000000 00:00 0 \n"
        "Rss:                  12 kB\n"
        "7f60-7f70 r-xp 00000000 00:00 0 [anon:v8]\n"
        "Rss:                   4 kB\n"
        "7ff0-7ff8 r-xp 00000000 00:00 0 [vdso]\n"
        "Rss:                   8 kB\n")
    assert bench.compiled_code_kib(smaps) == 2804 + 12 + 4


def test_the_memory_terms_need_bare_and_the_empty_filter_of_the_same_round():
    memory = [memory_run("bare", 1, 64.0, 65.0), memory_run("empty-wasm", 2, 88.0, 89.0),
              memory_run("tollgate", 1, 108.0, 134.0)]
    assert bench.memory_terms(memory) is None
    assert bench.memory_terms([]) is None


def test_a_dumps_totals_are_read_by_event_with_left_out_ones_zero(tmp_path):
    dump = tmp_path / "envoy.callgrind.2"
    # Callgrind leaves trailing zero totals out of the line.
    dump.write_text("version: 1\ncreator: callgrind\nevents: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr "
                    "DLmw\n\nfn=(1) main\n0x401000 7 1\ntotals: 1000 300 200 40 25\n")
    totals = instructions.dumped_totals(tmp_path / "envoy.callgrind", 2, timeout=1)
    assert totals == {"Ir": 1000, "Dr": 300, "Dw": 200, "I1mr": 40, "D1mr": 25}
    assert instructions.l1_misses(totals) == 65


def counted_run(scenario: str, config: str, instructions_: int, misses: int,
                fetch_misses: int) -> dict:
    return {"scenario": scenario, "config": config, "per_request": instructions_,
            "l1_misses_per_request": misses, "i1_misses_per_request": fetch_misses,
            "not_ok": 0, "requests": 2000}


def test_counted_misses_are_compared_like_the_instructions_scenario_5_with_scenario_1s_floor():
    counted = [counted_run("hot", "bare", 105_000, 4_400, 3_000),
               counted_run("hot", "empty-wasm", 141_000, 6_400, 4_500),  # +36,000, +2,000, +1,500
               counted_run("hot", "tollgate", 147_000, 7_000, 5_100),    # +42,000, +2,600, +2,100
               counted_run("ratelimit", "tollgate-ratelimit", 148_200, 7_200, 5_200)]
    summary = bench.summarize([], [], [], 1, [], counted)
    rows = summary["instructions"]
    assert rows["hot"]["tollgate"]["x_empty_over_bare"] == 42_000 / 36_000
    assert rows["hot"]["tollgate"]["l1_x_empty_over_bare"] == 2_600 / 2_000
    limited = rows["ratelimit"]["tollgate-ratelimit"]
    assert (limited["over_bare"], limited["l1_over_bare"]) == (43_200, 2_800)
    assert limited["l1_x_empty_over_bare"] == 2_800 / 2_000
    assert rows["hot"]["empty-wasm"]["l1_x_empty_over_bare"] is None
    assert rows["hot"]["tollgate"]["i1_x_empty_over_bare"] == 2_100 / 1_500
    assert limited["i1_x_empty_over_bare"] == 2_200 / 1_500
    scale = next(t["value"] for t in summary["targets"]
                 if t["target"].startswith("hot path, 1. one token, for scale"))
    assert scale == "2,600 vs 2,000: 1.30 x (instruction fetches alone: 2,100 vs 1,500: 1.40 x)"
