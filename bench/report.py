"""Figures per phase, ratios against the baseline of the same run, the printed tables."""

from __future__ import annotations

import math
from typing import Any

from bench.phases import PhaseResult

# (key, label, unit, higher_is_better) of every figure compared with the baseline.
COMPARED = [
    ("jobs_per_s", "throughput", "jobs/s", True),
    ("p50_ms", "p50 latency", "ms", False),
    ("p95_ms", "p95 latency", "ms", False),
    ("start_p50_ms", "p50 start call", "ms", False),
    ("unloaded_p50_ms", "unloaded p50 latency", "ms", False),
    ("worker_cpu_ms_per_job", "worker CPU per job", "ms", False),
    ("server_cpu_ms_per_job", "dev server CPU per job", "ms", False),
    ("total_cpu_ms_per_job", "all processes' CPU per job", "ms", False),
    ("worker_peak_rss_mb", "worker peak RSS", "MB", False),
    ("worker_rss_growth_mb", "worker peak RSS growth", "MB", False),
    ("worker_cores", "worker CPU cores busy", "cores", True),
]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def summarize(phase: PhaseResult, n: int) -> dict[str, Any]:
    jobs = phase.jobs
    done = [j for j in jobs if j.ok]
    errors = [f"{j.job_id or f'#{j.index}'}: {j.error}" for j in jobs if not j.ok]
    d = phase.deliveries
    problems = []
    if phase.error:
        problems.append(phase.error)
    if len(done) != n:
        problems.append(f"{n - len(done)} of {n} jobs not completed")
    if d and (d["received"] != n or d["missing"] or d["duplicated"] or d["unexpected"]):
        problems.append(f"receiver got {d['received']} requests for {n} jobs "
                        f"({len(d['missing'])} missing, {len(d['duplicated'])} duplicated, "
                        f"{len(d['unexpected'])} unexpected)")
    v = phase.verified
    if v:
        if v["memo_phases"].get("completed", 0) != n:
            problems.append(f"memo phases {v['memo_phases']}")
        if v["bad_signatures"]:
            problems.append(f"{v['bad_signatures']} deliveries with a bad signature")
    sd = phase.serial_deliveries
    serial_done = [j for j in phase.serial if j.ok]
    if phase.serial and (len(serial_done) != len(phase.serial) or sd["received"] != len(phase.serial)
                         or sd["missing"] or sd["duplicated"] or sd["unexpected"]):
        problems.append(f"one-at-a-time jobs: {len(serial_done)}/{len(phase.serial)} completed, "
                        f"receiver got {sd['received']}")
    w = phase.warmup
    if w and (w["completed"] != w["jobs"] or w["received"] != w["jobs"]):
        problems.append(f"warm-up: {w['completed']}/{w['jobs']} completed, receiver got {w['received']}")

    out: dict[str, Any] = {"name": phase.name, "label": phase.label, "jobs": n, "completed": len(done),
                           "ok": not problems, "problems": problems, "errors": errors[:10],
                           "deliveries": {k: (v if isinstance(v, int) else len(v)) for k, v in d.items()},
                           "warmup": {k: (v if isinstance(v, int) else len(v)) for k, v in w.items()},
                           "verified": v}
    if done:
        wall = max(j.done for j in done) - min(j.issued for j in jobs)
        latencies = [(j.done - j.issued) * 1000 for j in done]
        starts = [(j.started - j.issued) * 1000 for j in jobs if j.started is not None]
        out.update(wall_s=_r(wall, 3), jobs_per_s=_r(len(done) / wall, 2),
                   p50_ms=_r(percentile(latencies, 50)), p95_ms=_r(percentile(latencies, 95)),
                   max_ms=_r(max(latencies)), start_p50_ms=_r(percentile(starts, 50), 2))
    if serial_done:
        unloaded = [(j.done - j.issued) * 1000 for j in serial_done]
        out.update(unloaded_jobs=len(serial_done), unloaded_p50_ms=_r(percentile(unloaded, 50)),
                   unloaded_p95_ms=_r(percentile(unloaded, 95)))
    u = phase.usage
    if u:
        cpu = u["cpu_s"]
        per_job = lambda s: _r(s * 1000 / n, 2)  # noqa: E731
        out.update(
            cpu_s={k: round(v, 3) for k, v in cpu.items()},
            worker_cpu_ms_per_job=per_job(cpu.get("worker", 0)),
            server_cpu_ms_per_job=per_job(cpu["server"]) if "server" in cpu else None,
            api_cpu_ms_per_job=per_job(cpu["api"]) if "api" in cpu else None,
            driver_cpu_ms_per_job=per_job(cpu["driver"]),
            total_cpu_ms_per_job=per_job(sum(cpu.values())),
            worker_cores=_r(cpu.get("worker", 0) / out["wall_s"], 2) if out.get("wall_s") else None,
            # Peak = VmHWM, the process's own high-water RSS, reset once the worker is ready (see
            # worker_proc.reset_peak_rss). Not ru_maxrss: after exec that also counts the parent's
            # RSS at fork time, i.e. the driver's, which grows from phase to phase.
            worker_idle_rss_mb=_r(u["worker_ready"]["rss_kb"] / 1024),
            worker_peak_rss_mb=_r(_peak_kb(u["worker_after"]) / 1024),
            worker_rss_growth_mb=_r((_peak_kb(u["worker_after"]) - u["worker_ready"]["rss_kb"]) / 1024),
            worker_rss_after_mb=_r(u["worker_after"]["rss_kb"] / 1024),
            worker_peak_reset_after_startup=u["worker_ready"].get("peak_reset"),
            worker_usage_kb={k: {"maxrss": u[k]["maxrss_kb"], "hwm": u[k].get("hwm_kb"), "rss": u[k]["rss_kb"]}
                             for k in ("worker_ready", "worker_before", "worker_after", "worker_stopped") if k in u},
        )
    return out


def _peak_kb(usage: dict) -> int:
    return usage.get("hwm_kb") or usage["maxrss_kb"]


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 2)


def ratios(summary: dict, base: dict) -> dict[str, float | None]:
    return {key: ratio(summary.get(key), base.get(key)) for key, *_ in COMPARED}


def _x(r: float | None) -> str:
    return "  n/a" if r is None else f"{r:.2f}x"


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(summaries: list[dict], base: dict, header: str) -> str:
    lines = [header, ""]
    head = (f"{'phase':<22}{'done':>9}{'jobs/s':>9}{'':>7}{'p50 ms':>9}{'':>7}{'p95 ms':>9}{'':>7}"
            f"{'start p50':>10}{'':>7}{'1-at-a-time p50':>16}{'':>7}")
    lines.append(head)
    lines.append("-" * len(head))
    for s in summaries:
        r = s.get("ratios", {})
        lines.append(
            f"{s['label']:<22}{s['completed']:>5}/{s['jobs']:<3}{_num(s.get('jobs_per_s')):>9}"
            f"{_x(r.get('jobs_per_s')):>7}{_num(s.get('p50_ms'), '{:.0f}'):>9}{_x(r.get('p50_ms')):>7}"
            f"{_num(s.get('p95_ms'), '{:.0f}'):>9}{_x(r.get('p95_ms')):>7}"
            f"{_num(s.get('start_p50_ms'), '{:.1f}'):>10}{_x(r.get('start_p50_ms')):>7}"
            f"{_num(s.get('unloaded_p50_ms'), '{:.0f}'):>16}{_x(r.get('unloaded_p50_ms')):>7}")
    lines.append("")
    head = (f"{'phase':<22}{'worker cores':>13}{'CPU ms/job: worker':>19}{'':>7}{'server':>8}{'':>7}{'api':>6}{'driver':>8}"
            f"{'all':>7}{'':>7}{'worker RSS MB: peak':>20}{'':>7}{'growth':>8}{'':>8}")
    lines.append(head)
    lines.append("-" * len(head))
    for s in summaries:
        r = s.get("ratios", {})
        lines.append(
            f"{s['label']:<22}{_num(s.get('worker_cores'), '{:.2f}'):>13}"
            f"{_num(s.get('worker_cpu_ms_per_job'), '{:.2f}'):>19}"
            f"{_x(r.get('worker_cpu_ms_per_job')):>7}{_num(s.get('server_cpu_ms_per_job'), '{:.2f}'):>8}"
            f"{_x(r.get('server_cpu_ms_per_job')):>7}{_num(s.get('api_cpu_ms_per_job'), '{:.2f}'):>6}"
            f"{_num(s.get('driver_cpu_ms_per_job'), '{:.2f}'):>8}{_num(s.get('total_cpu_ms_per_job'), '{:.2f}'):>7}"
            f"{_x(r.get('total_cpu_ms_per_job')):>7}{_num(s.get('worker_peak_rss_mb')):>20}"
            f"{_x(r.get('worker_peak_rss_mb')):>7}{_num(s.get('worker_rss_growth_mb')):>8}"
            f"{_x(r.get('worker_rss_growth_mb')):>8}")
    lines.append("")
    for s in summaries:
        checks = "OK" if s["ok"] else "FAILED: " + "; ".join(s["problems"])
        d = s.get("deliveries") or {}
        extra = ""
        if s.get("verified"):
            v = s["verified"]
            extra = (f", memo completed {v['memo_phases'].get('completed', 0)}/{s['jobs']}, "
                     f"signatures valid {v['signatures_checked'] - v['bad_signatures']}/{v['signatures_checked']}, "
                     f"retried attempts {v['extra_attempts']}")
        lines.append(f"{s['label']:<22}receiver got {d.get('received', 0)}/{s['jobs']}{extra}: {checks}")
    return "\n".join(lines)


def headline(summaries: list[dict], base_label: str) -> list[str]:
    out = []
    for s in summaries:
        if s["name"] == "bare":
            continue
        r = s.get("ratios", {})
        parts = [f"{label} = {_x(r.get(key)).strip()}" for key, label, _, _ in COMPARED if r.get(key) is not None]
        out.append(f"{s['label']} vs {base_label}: " + ", ".join(parts))
    return out
