"""Ratios against the baseline of the same server configuration, the printed tables, the targets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (key, label) of every figure compared with the first bare phase of the same configuration.
# A phase during which other work on the machine used at least this many cores is marked unreliable.
NOISY_CORES = 0.25

COMPARED = [
    ("delivered_per_s", "delivered/s"),
    ("p50_ms", "p50 latency"),
    ("p95_ms", "p95 latency"),
    ("server_cpu_ms_per_job", "dev-server CPU/job"),
    ("worker_cpu_ms_per_job", "worker CPU/job"),
    ("total_cpu_ms_per_job", "all CPU/job"),
    ("worker_peak_rss_mb", "worker peak RSS"),
    ("history_events_per_job", "history events/job"),
    ("storage_calls_per_job", "server storage calls/job"),
    ("visibility_calls_per_job", "visibility calls/job"),
]


def write_figures(path: Path, figures: dict) -> dict:
    """The figures as indented JSON at `path` (its folder made if need be); returns them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 2)


def add_ratios(phases: list[dict]) -> None:
    """Each phase's figures against the first bare phase's (none without one: `--phases api`)."""
    for p in phases:
        p["history_events_per_job"] = (p.get("history") or {}).get("per_job")
        p["storage_calls_per_job"] = (p.get("storage_calls") or {}).get("per_job")
        p["visibility_calls_per_job"] = (p.get("storage_calls") or {}).get("visibility_per_job")
    base = next((p for p in phases if p["name"] == "bare"), None)
    for p in phases:
        p["ratios"] = {key: ratio(p.get(key), base.get(key) if base else None) for key, _ in COMPARED}


def _x(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def _n(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _row(cells: list[tuple[str, int]]) -> str:
    return "".join(f"{text:>{width}}" if i else f"{text:<{width}}" for i, (text, width) in enumerate(cells))


def _noisy(p: dict | None) -> bool:
    return p is not None and bool(p) and (p.get("other_cores") or 0) >= NOISY_CORES


def config_table(config: dict) -> str:
    phases = config["phases"]
    if not phases:  # --phases naming none of the load phases (fairness alone, say)
        return f"== {config['label']}: no load phase run"
    base = next((p["label"] for p in phases if p["name"] == "bare"), None)
    against = f"ratios against '{base}' of this configuration" if base else "no bare phase: no ratios"
    lines = [f"== {config['label']}  ({against})"]
    head = [
        ("phase", 20),
        ("done", 9),
        ("delivered/s", 12),
        ("", 7),
        ("p50 ms", 8),
        ("", 7),
        ("p95 ms", 8),
        ("", 7),
        ("start p50", 10),
        ("events/job", 11),
        ("", 7),
        ("storage/job", 12),
        ("", 7),
        ("visibility", 11),
        ("", 7),
    ]
    lines.append(_row(head))
    for p in phases:
        r = p.get("ratios", {})
        lines.append(
            _row(
                [
                    (p["label"] + (" !" if _noisy(p) else ""), 20),
                    (f"{p.get('completed', 0)}/{p['jobs']}", 9),
                    (_n(p.get("delivered_per_s")), 12),
                    (_x(r.get("delivered_per_s")), 7),
                    (_n(p.get("p50_ms"), "{:.0f}"), 8),
                    (_x(r.get("p50_ms")), 7),
                    (_n(p.get("p95_ms"), "{:.0f}"), 8),
                    (_x(r.get("p95_ms")), 7),
                    (_n(p.get("start_p50_ms")), 10),
                    (_n(p.get("history_events_per_job")), 11),
                    (_x(r.get("history_events_per_job")), 7),
                    (_n(p.get("storage_calls_per_job")), 12),
                    (_x(r.get("storage_calls_per_job")), 7),
                    (_n(p.get("visibility_calls_per_job"), "{:.2f}"), 11),
                    (_x(r.get("visibility_calls_per_job")), 7),
                ]
            )
        )
    lines.append("")
    head = [
        ("CPU ms per job", 20),
        ("server", 8),
        ("", 7),
        ("worker", 8),
        ("", 7),
        ("api", 7),
        ("sink", 7),
        ("driver", 8),
        ("all", 8),
        ("", 7),
        ("worker RSS MB: peak", 20),
        ("", 7),
        ("cores: server", 14),
        ("worker", 7),
        ("python", 8),
        ("others", 7),
    ]
    lines.append(_row(head))
    for p in phases:
        r = p.get("ratios", {})
        lines.append(
            _row(
                [
                    (p["label"], 20),
                    (_n(p.get("server_cpu_ms_per_job"), "{:.2f}"), 8),
                    (_x(r.get("server_cpu_ms_per_job")), 7),
                    (_n(p.get("worker_cpu_ms_per_job"), "{:.2f}"), 8),
                    (_x(r.get("worker_cpu_ms_per_job")), 7),
                    (_n(p.get("api_cpu_ms_per_job"), "{:.2f}"), 7),
                    (_n(p.get("sink_cpu_ms_per_job"), "{:.2f}"), 7),
                    (_n(p.get("driver_cpu_ms_per_job"), "{:.2f}"), 8),
                    (_n(p.get("total_cpu_ms_per_job"), "{:.2f}"), 8),
                    (_x(r.get("total_cpu_ms_per_job")), 7),
                    (_n(p.get("worker_peak_rss_mb")), 20),
                    (_x(r.get("worker_peak_rss_mb")), 7),
                    (_n(p.get("server_cores"), "{:.2f}"), 14),
                    (_n(p.get("worker_cores"), "{:.2f}"), 7),
                    (_n(p.get("worker_python_cores"), "{:.2f}"), 8),
                    (_n(p.get("other_cores"), "{:.2f}"), 7),
                ]
            )
        )
    storage = [(p["label"], p["storage_calls"]["by_operation"]) for p in phases if p.get("storage_calls")]
    if storage:
        lines.append("")
        lines.append("the dev server's storage calls per job, the most first (its /metrics):")
        for label, by_op in storage:
            lines.append(f"  {label:<20}" + ", ".join(f"{op} {n:g}" for op, n in list(by_op.items())[:8]))
    paced = config.get("paced")
    if any(_noisy(p) for p in phases + [paced]):
        lines.append(
            f"! other work on the machine used {NOISY_CORES} cores or more during this phase: "
            "its figures are unreliable"
        )
    if paced:
        lines.append("")
        lines.append(
            f"paced Herald (HTTP API){' !' if _noisy(paced) else ''} at {paced['rate_per_s']}/s "
            f"for {paced['seconds']} s: "
            f"POST p50 {_n(paced['post_p50_ms'])} / p95 {_n(paced.get('post_p95_ms'))} "
            f"/ p99 {_n(paced['post_p99_ms'])} ms, "
            f"GET status p50 {_n(paced['get_p50_ms'])} / p95 {_n(paced.get('get_p95_ms'))} "
            f"/ p99 {_n(paced['get_p99_ms'])} ms "
            f"({paced['gets']} GETs, {paced['get_statuses']}), "
            f"the server's describe alone p50 {_n(paced.get('describe_p50_ms'))} "
            f"/ p99 {_n(paced.get('describe_p99_ms'))} ms, "
            f"delivery p50 {_n(paced['delivery_p50_ms'], '{:.0f}')} ms, "
            f"server CPU {_n(paced['server_cpu_ms_per_job'], '{:.2f}')} ms/job, "
            f"driver late p99 {_n(paced['driver_late_p99_ms'])} ms, "
            f"others' cores {_n(paced.get('other_cores'), '{:.2f}')}"
        )
    lines.append("")
    for p in phases + ([{**paced, "label": "paced"}] if paced else []):
        d = p.get("deliveries") or {}
        got = f"sink got {d.get('received', p.get('delivered', 0))}"
        if "message_id_is_job_id" in p:
            got += f", Message-ID <jobId@herald> {p['message_id_is_job_id']}/{p['jobs']}"
        lines.append(f"{p['label']:<20}{got}: " + ("OK" if p["ok"] else "FAILED: " + "; ".join(p["problems"])))
    return "\n".join(lines)


def _phase(config: dict | None, name: str) -> dict | None:
    if not config:
        return None
    return next((p for p in config["phases"] if p["name"] == name), None)


def _vs_bare_runs(
    config: dict | None, key: str, phase: str = "api", higher: bool = True
) -> tuple[float | None, float | None]:
    """Herald's figure against the bare runs before and after it: against their mean (cancels a steady drift),
    and against the one that makes it look worse (the issue's "lower of two runs": one run swings, so a target
    counts as met only against both)."""
    api, bare, bare2 = _phase(config, phase), _phase(config, "bare"), _phase(config, "bare2")
    if not (api and bare and bare2) or bare.get(key) is None or bare2.get(key) is None:
        return None, None
    worse = max(bare[key], bare2[key]) if higher else min(bare[key], bare2[key])
    return ratio(api.get(key), (bare[key] + bare2[key]) / 2), ratio(api.get(key), worse)


def targets(configs: dict[str, dict], ceiling: dict | None = None) -> list[dict]:
    """Issue 19's targets (single job, latency, batches) and earlier issues', each with what this run
    measured (None: not measured in this run)."""
    out: list[dict] = []

    # measured: a phase's figure, None when the phase did not run (`phase and phase[...]`).
    def add(
        target: str,
        measured: Any,
        limit: float,
        higher: bool,
        unit: str = "x",
        over: Sequence[dict | None] = (),
        vs_bare: tuple[float | None, float | None] = (None, None),
    ) -> None:
        both, worse = vs_bare
        # Judged against both bare runs where there are two: the worse of the two ratios must meet it.
        judged = measured if worse is None or measured is None else worse
        if judged is None:
            verdict = "not run"
        else:
            verdict = "PASS" if (judged >= limit if higher else judged <= limit) else "MISS"
        # gap: how far the measurement is from the limit, negative when it falls short.
        gap = None if judged is None else round((judged - limit) if higher else (limit - judged), 2)
        out.append(
            {
                "target": target,
                "limit": f"{'>=' if higher else '<='} {limit:g}{unit}",
                "measured": measured,
                "unit": unit,
                "gap": gap,
                "verdict": verdict,
                "vs_both_bare": both,
                "vs_worse_bare": worse,
                "noisy": any(_noisy(p) for p in over),
            }
        )

    file, memory = configs.get("file"), configs.get("memory")
    for key, config, limit in (("file", file, 1.3), ("memory", memory, 1.0)):
        api = _phase(config, "api")
        where = "SQLite file, make run's pragmas" if key == "file" else "in-memory server"
        add(
            f"Herald API delivered rate vs baseline ({where})",
            api and api.get("ratios", {}).get("delivered_per_s"),
            limit,
            True,
            vs_bare=_vs_bare_runs(config, "delivered_per_s"),
            over=[api, _phase(config, "bare")],
        )
    for key, config in (("file", file), ("memory", memory)):
        api = _phase(config, "api")
        where = "SQLite file" if key == "file" else "in memory"
        add(
            f"dev-server CPU per job vs baseline ({where})",
            api and api.get("ratios", {}).get("server_cpu_ms_per_job"),
            0.7,
            False,
            vs_bare=_vs_bare_runs(config, "server_cpu_ms_per_job", higher=False),
            over=[api, _phase(config, "bare")],
        )
    api = _phase(file, "api")
    add(
        "make run stack delivers (Herald API, SQLite file), emails/s",
        api and api.get("delivered_per_s"),
        35,
        True,
        "/s",
        over=[api],
    )
    for key, config in (("file", file), ("memory", memory)):
        paced = (config or {}).get("paced")
        where = "SQLite file" if key == "file" else "in memory"
        add(
            f"POST /jobs/email p99 at half the saturating rate ({where}), ms",
            paced and paced.get("post_p99_ms"),
            30,
            False,
            " ms",
            over=[paced],
        )
        add(
            f"GET /jobs/{{id}}/status p99 at half the saturating rate ({where}), ms",
            paced and paced.get("get_p99_ms"),
            20,
            False,
            " ms",
            over=[paced],
        )
    for key, config in (("file", file), ("memory", memory)):
        batches = _phase(config, "batch")
        where = "SQLite file" if key == "file" else "in memory"
        add(
            f"Herald batches: delivered rate vs baseline ({where})",
            batches and batches.get("ratios", {}).get("delivered_per_s"),
            20,
            True,
            vs_bare=_vs_bare_runs(config, "delivered_per_s", "batch"),
            over=[batches, _phase(config, "bare")],
        )
        # The sink's ceiling as a batch sends: over SMTP sessions kept open (else a connection per email).
        top = (ceiling or {}).get("sessions_delivered_per_s") or (ceiling or {}).get("delivered_per_s")
        if ceiling and batches and top and batches.get("delivered_per_s"):
            noisy = max(ceiling.get("other_cores") or 0, ceiling.get("sessions_other_cores") or 0) >= NOISY_CORES
            add(
                f"Herald batches vs the SMTP sink's own ceiling ({where})",
                ratio(batches["delivered_per_s"], top),
                0.85,
                True,
                over=[batches],
            )
            out[-1]["noisy"] = out[-1]["noisy"] or noisy
    for key, config in (("file", file), ("memory", memory)):
        big = _phase(config, "big_batch")
        if big is None:
            continue
        where = "SQLite file" if key == "file" else "in memory"
        add(
            f"one batch of {big['jobs']}: delivered rate vs baseline ({where})",
            big.get("ratios", {}).get("delivered_per_s"),
            10,
            True,
            vs_bare=_vs_bare_runs(config, "delivered_per_s", "big_batch"),
            over=[big, _phase(config, "bare")],
        )
        out.append(
            {
                "target": f"one batch of {big['jobs']}: POST to last email, s ({where})",
                "limit": "info",
                "measured": big.get("wall_s"),
                "unit": " s",
                "gap": None,
                "verdict": "info",
                "noisy": _noisy(big),
            }
        )
    fairness_rows(out, add, configs)
    old = _phase(configs.get("file-default"), "api")
    if old and api:
        out.append(
            {
                "target": "Herald API: make run's pragmas vs default pragmas (same code)",
                "limit": "info",
                "measured": ratio(api.get("delivered_per_s"), old.get("delivered_per_s")),
                "unit": "x",
                "gap": None,
                "verdict": "info",
            }
        )
    return out


def targets_table(rows: list[dict]) -> str:
    width = max(len(r["target"]) for r in rows) + 2
    lines = [
        f"{'target':<{width}}{'limit':>10}{'measured':>11}{'margin':>9}  {'verdict':<9}{'vs both bare runs':>18}"
        f"{'vs the worse':>14}"
    ]
    for r in rows:
        m, g, b, w = r["measured"], r.get("gap"), r.get("vs_both_bare"), r.get("vs_worse_bare")
        shown = "-" if m is None else (f"{m:.2f}x" if r["unit"] == "x" else f"{m:.1f}")
        margin = "" if g is None else (f"{g:+.2f}x" if r["unit"] == "x" else f"{g:+.1f}")
        verdict = r["verdict"] + (" !" if r.get("noisy") else "")
        lines.append(
            f"{r['target']:<{width}}{r['limit']:>10}{shown:>11}{margin:>9}  {verdict:<9}"
            f"{'' if b is None else f'{b:.2f}x':>18}{'' if w is None else f'{w:.2f}x':>14}"
        )
    if any(r.get("noisy") for r in rows):
        lines.append(
            f"! measured while other work on the machine used {NOISY_CORES} cores or more: unreliable, run again"
        )
    return "\n".join(lines)


def fairness_rows(out: list[dict], add: Any, configs: dict[str, dict]) -> None:
    """The fairness phase's figures (bench/fairness.py), from the one configuration that ran it."""
    config = next((c for c in configs.values() if c.get("fairness")), None)
    if config is None:
        return
    f = config["fairness"]
    o, w, c = f.get("overtake") or {}, f.get("weights") or {}, f.get("cap") or {}
    noisy = [f]
    n = o.get("a_jobs")
    add(
        f"fairness: tenant B's one email after A's {n}: POST to delivery, s",
        o.get("b_latency_s"),
        5,
        False,
        " s",
        over=noisy,
    )
    add(
        f"fairness: share of A's {n} still waiting when B's email arrived", o.get("a_left_share"), 0.5, True, over=noisy
    )
    out.append(
        {
            "target": f"fairness: B's email's position among the deliveries (first in, first out: {(n or 0) + 1})",
            "limit": "info",
            "measured": o.get("b_position"),
            "unit": "",
            "gap": None,
            "verdict": "info",
        }
    )
    share = w.get("a_share_vs_weights")
    add(
        "weights 3:1: |A's share of sends / 0.75 - 1| while both have backlogs",
        None if share is None else round(abs(share - 1), 2),
        0.13,
        False,
        over=noisy,
    )
    cap = c.get("cap")
    add(f"cap {cap:g}/s: A's sends/s after its first 2 s / cap", c.get("a_steady_vs_cap"), 1.2, False, over=noisy)
    add(f"cap {cap:g}/s: A's sends/s over its whole span / cap", c.get("a_vs_cap"), 1.2, False, over=noisy)
    out.append(
        {
            "target": f"cap {cap:g}/s: A's most sends in any 1 s / cap (the burst)",
            "limit": "info",
            "measured": c.get("a_most_in_1s_vs_cap"),
            "unit": "x",
            "gap": None,
            "verdict": "info",
        }
    )
    b_done = c.get("a_sent_when_b_done")
    add(
        f"cap {cap:g}/s: A's sent when B's {c.get('b_jobs')} were all out / A's {c.get('a_jobs')} (B not slowed)",
        None if b_done is None or not c.get("a_jobs") else round(b_done / c["a_jobs"], 2),
        0.25,
        False,
        over=noisy,
    )
    out.append(
        {
            "target": f"cap {cap:g}/s: B's sends/s / cap",
            "limit": "info",
            "measured": c.get("b_vs_cap"),
            "unit": "x",
            "gap": None,
            "verdict": "info",
        }
    )
