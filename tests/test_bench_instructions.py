"""bench/instructions.py: its workloads run on the current code, and a count is per measured record."""

from __future__ import annotations

import pytest

from bench import instructions


@pytest.mark.parametrize("workload", instructions.WORKLOADS)
@pytest.mark.parametrize("measured", [False, True])
def test_each_workload_runs_set_up_only_and_measured(workload, measured):
    instructions.child(workload, 40, measured)


def test_instructions_per_record_are_the_measured_runs_less_the_set_up_runs(monkeypatch, tmp_path):
    counted = {}

    def fake(workload, records, measured, code):
        counted[workload, measured] = code
        base = 1_000_000 * (instructions.WORKLOADS.index(workload) + 1)
        return base + (records * 300 if measured else 0)

    monkeypatch.setattr(instructions, "_instructions", fake)
    assert instructions.measure(50, tmp_path) == {workload: 300 for workload in instructions.WORKLOADS}
    assert set(counted) == {(w, m) for w in instructions.WORKLOADS for m in (False, True)}
    assert set(counted.values()) == {tmp_path}


def test_the_block_names_the_revision_and_each_workload():
    block = instructions.markdown({"transactions": 123_456, "cycle close": 7}, "abc1234", 2_000)
    assert block.startswith(instructions.START_MARKER) and block.endswith(instructions.END_MARKER)
    assert "`abc1234`" in block and "| transactions | 123,456 |" in block and "| cycle close | 7 |" in block
