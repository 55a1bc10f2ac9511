"""`python -m bench` end to end, tiny: every phase runs, every email arrives once, the targets table is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--jobs",
            "5",
            "--configs",
            "memory",
            "--paced-seconds",
            "2",
            "--history-sample",
            "2",
            "--job-timeout",
            "30",
            "--batch-jobs",
            "20",
            "--batch-size",
            "10",
            # Past one chunk (HERALD_BATCH_CHUNK_ITEMS, 1000): a ChunkedBatchWorkflow over two chunks.
            "--big-batch",
            "1200",
            # Two tenants, tiny: A's 40 then B's one, 20 each at 3:1, the default cap (5/s) over 30 of A's.
            "--fairness-jobs",
            "40",
            "--fairness-share-jobs",
            "20",
            "--fairness-cap-jobs",
            "30",
            # No waiting for an idle machine before each timed window: the suite's other tests keep it
            # busy (up to 20 s a window, some 2 min in all), and these figures are not compared.
            "--quiet-wait",
            "0",
            # The batch phases on two worker processes (HERALD_WORKER_PROCESSES's way), slices of 5.
            "--worker-processes",
            "2",
            "--herald-env",
            "HERALD_BATCH_SLICE_ITEMS=5",
            "--out",
            str(out),
        ],
        # Some 20 s alone; the bound only stops a hang (the suite's other workers share the cores).
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["ok"], result["problems"]
    assert result["sink_ceiling"]["ok"]
    memory = result["configs"]["memory"]
    assert [p["name"] for p in memory["phases"]] == ["bare", "api", "batch", "big_batch", "bare2"]
    for phase in memory["phases"]:
        n = {"batch": 20, "big_batch": 1200}.get(phase["name"], 5)
        assert phase["completed"] == n and phase["deliveries"]["received"] == n
        assert phase["delivered_per_s"] > 0 and phase["server_cpu_ms_per_job"] is not None
        assert phase["history"]["per_job"] > 0
        # The server's own count of its storage calls (its /metrics): a job is created and closed in it.
        calls = phase["storage_calls"]
        assert calls["by_operation"]["store:history:CreateWorkflowExecution"] > 0 and calls["visibility_calls"] > 0
    assert memory["paced"]["ok"] and memory["paced"]["post_p99_ms"] is not None
    # The server's own describe, timed beside each GET: the floor a GET's time is read against.
    assert memory["paced"]["describe_p99_ms"] is not None and memory["paced"]["get_p99_ms"] is not None
    verdicts = {row["target"]: row["verdict"] for row in result["targets"]}
    assert any(v in ("PASS", "MISS") for v in verdicts.values())
    assert "Herald API delivered rate vs baseline (in-memory server)" in verdicts
    assert verdicts["Herald batches: delivered rate vs baseline (in memory)"] in ("PASS", "MISS")
    assert verdicts["Herald batches vs the SMTP sink's own ceiling (in memory)"] in ("PASS", "MISS")
    batch = memory["phases"][2]
    assert batch["message_id_is_job_id"] == 20 and batch["history"]["per_batch"] > 0
    assert batch["worker_processes"] == 2 and memory["phases"][1]["worker_processes"] == 1
    assert result["meta"]["herald_env"] == {"HERALD_BATCH_SLICE_ITEMS": "5"}
    big = memory["phases"][3]
    assert big["message_id_is_job_id"] == 1200 and big["history"]["chunk_events"] > big["history"]["per_batch"]
    assert verdicts["one batch of 1200: delivered rate vs baseline (in memory)"] in ("PASS", "MISS")
    fairness = memory["fairness"]
    assert fairness["ok"], fairness["problems"]
    assert fairness["overtake"]["b_latency_s"] is not None and fairness["overtake"]["b_position"] >= 1
    assert fairness["weights"]["counted"] == 20 and fairness["weights"]["a_share"] is not None
    assert fairness["cap"]["a_per_s"] is not None and fairness["cap"]["b_per_s"] is not None
    assert verdicts["fairness: tenant B's one email after A's 40: POST to delivery, s"] in ("PASS", "MISS")
    assert verdicts["cap 5/s: A's sends/s over its whole span / cap"] in ("PASS", "MISS")


def test_phases_picks_exactly_the_phases_named():
    from bench.__main__ import parse_args

    args = parse_args(["--phases", "bare,batch,bare2", "--worker-processes", "2"])
    assert (args.no_batch, args.no_repeat, args.no_paced, args.start_job) == (False, False, True, False)
    assert args.big_batch == 0 and args.fairness_jobs == 0 and args.worker_processes == 2
    assert parse_args([]).phases is None and parse_args([]).big_batch == 10_000
    with pytest.raises(SystemExit):
        parse_args(["--phases", "bare,nonsense"])
    with pytest.raises(SystemExit):
        parse_args(["--herald-env", "BATCH_SLICE_ITEMS=5"])
