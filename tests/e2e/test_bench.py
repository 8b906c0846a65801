"""The benchmark's own arithmetic, on runs it did not measure: a target's verdict is only as
good as the figures it is computed from."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench  # noqa: E402


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


def test_the_memory_terms_need_bare_and_the_empty_filter_of_the_same_round():
    memory = [memory_run("bare", 1, 64.0, 65.0), memory_run("empty-wasm", 2, 88.0, 89.0),
              memory_run("tollgate", 1, 108.0, 134.0)]
    assert bench.memory_terms(memory) is None
    assert bench.memory_terms([]) is None
