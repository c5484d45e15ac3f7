"""Does ``pooldoctor simulate`` stay flat over a long run? Its own memory and time per task.

``pooldoctor simulate`` on pooldoctor/demo/fixed (its wrapper is clean, so every task runs; pool
max_size 4) with ``--workers 4`` and one mode plus the fixture's wrapper, at ``--tasks`` SHORT
(100) and LONG (1,000) per subject, side by side. While each run goes on, the pooldoctor process
itself (not its workers: they are separate processes with their own memory) is sampled from
``/proc/<pid>/status`` every 0.2 s: its resident set (VmRSS) and its peak (VmHWM). Flat means the
long run's peak is about the short run's, and RSS late in the long run is about RSS early in it
(the first quarter of the samples against the last quarter); time per task is each subject's fleet
``seconds`` (worker start to worker stopped) over its tasks, from the JSON report.

Run from anywhere with the interpreter pooldoctor is installed in (Linux: /proc)::

    python benchmarks/soak.py                    # 100 and 1,000 tasks per subject
    python benchmarks/soak.py --long 300 --json

At the end it kills and reports any process of the run still alive (found by an environment
marker) and any simulate session still open, and exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATABASE,
    ROOT,
    SETTINGS,
    environment,
    environment_lines,
    handle_signals,
    interrupt,
    pooldoctor_command,
    progress,
    stray_sessions,
    sweep,
)

FIXTURE = ROOT / "pooldoctor" / "demo" / "fixed"
WRAPPER = "mysite.celeryapp:async_task_wrapper"
MODE = "async-to-sync"
WORKERS = 4
MARKER = "POOLDOCTOR_SOAK_RUN"
SAMPLE_EVERY = 0.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", type=int, default=100, help="tasks per subject (default 100)")
    parser.add_argument("--long", type=int, default=1000, help="tasks per subject (default 1000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser.parse_args(argv)


def memory_kib(pid: int) -> tuple[int, int] | None:
    """VmRSS and VmHWM of ``pid`` in KiB, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (KeyError, ValueError):
        return None


def soak(tasks: int, bench_id: str) -> dict[str, Any]:
    """One simulate run of ``tasks`` per subject, its pooldoctor process sampled all along."""
    with tempfile.TemporaryDirectory(prefix="pooldoctor-soak-") as tmp:
        out = Path(tmp) / "report.json"
        command = [
            *pooldoctor_command(), "simulate", "--settings", SETTINGS, "--modes", MODE,
            "--wrapper", WRAPPER, "--workers", str(WORKERS), "--tasks", str(tasks),
            "--format", "json", "--output", str(out),
        ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            cwd=FIXTURE,
            env={**os.environ, MARKER: bench_id},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        samples: list[tuple[float, int, int]] = []

        def sample() -> None:
            while proc.poll() is None:
                memory = memory_kib(proc.pid)
                if memory is not None:
                    samples.append((time.monotonic() - started, *memory))
                time.sleep(SAMPLE_EVERY)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, stderr = proc.communicate()
        except BaseException:
            interrupt(proc)
            raise
        sampler.join()
        seconds = time.monotonic() - started
        if not out.exists():
            raise SystemExit(f"soak: simulate wrote no report (exit {proc.returncode}): {stderr}")
        report = json.loads(out.read_text())
    quarter = max(1, len(samples) // 4)
    early = [rss for _, rss, _ in samples[:quarter]]
    late = [rss for _, rss, _ in samples[-quarter:]]
    subjects = [
        {
            "subject": s["subject"],
            "verdict": s["verdict"],
            "tasks": s["tasks"],
            "seconds": s["seconds"],
            "ms_per_task": round(1000 * s["seconds"] / max(1, s["tasks"]), 2),
        }
        for s in report["results"]
    ]
    return {
        "tasks_per_subject": tasks,
        "exit_code": proc.returncode,
        "verdict": report["verdict"],
        "seconds": round(seconds, 2),
        "samples": len(samples),
        "peak_rss_mib": round(max((hwm for *_, hwm in samples), default=0) / 1024, 1),
        "rss_first_quarter_mib": round(sum(early) / max(1, len(early)) / 1024, 1),
        "rss_last_quarter_mib": round(sum(late) / max(1, len(late)) / 1024, 1),
        "subjects": subjects,
    }


def render(result: dict[str, Any]) -> str:
    lines = ["# pooldoctor simulate soak", "", *environment_lines(result["environment"]), ""]
    lines.append(
        f"{'tasks/subject':>13}  {'wall s':>7}  {'peak RSS':>9}  {'RSS 1st q':>9}  "
        f"{'RSS last q':>10}  per-task ms (subject: verdict)"
    )
    for run in result["runs"]:
        per_task = ", ".join(
            f"{s['subject']}: {s['ms_per_task']} ({s['verdict']}, {s['tasks']} tasks)"
            for s in run["subjects"]
        )
        lines.append(
            f"{run['tasks_per_subject']:>13}  {run['seconds']:>7.1f}  "
            f"{run['peak_rss_mib']:>5.1f} MiB  {run['rss_first_quarter_mib']:>5.1f} MiB  "
            f"{run['rss_last_quarter_mib']:>6.1f} MiB  {per_task}"
        )
    short, long = result["runs"]
    extra = 2 * (long["tasks_per_subject"] - short["tasks_per_subject"])
    lines.append("")
    lines.append(
        f"marginal: {1000 * (long['seconds'] - short['seconds']) / max(1, extra):.1f} ms of wall "
        f"time per extra task, {long['peak_rss_mib'] - short['peak_rss_mib']:+.1f} MiB of peak "
        f"RSS for {extra} more tasks"
    )
    leftovers = result["leftovers"]
    lines.append("")
    lines.append(
        f"left behind: {len(leftovers['processes'])} processes, "
        f"{len(leftovers['sessions'])} sessions"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handle_signals()
    bench_id = uuid.uuid4().hex[:8]
    env = environment(DEFAULT_DATABASE, "soak")
    load_before = os.getloadavg()
    runs = []
    try:
        for tasks in (args.short, args.long):
            progress(f"soak: simulate, {WORKERS} workers, {tasks} tasks per subject")
            runs.append(soak(tasks, bench_id))
            progress(f"  {runs[-1]['seconds']} s, peak RSS {runs[-1]['peak_rss_mib']} MiB")
    except KeyboardInterrupt:
        progress("soak: interrupted")
        return 130
    finally:
        strays = sweep(MARKER, bench_id, "soak")
    env["load_average"] = {"before": load_before, "after": os.getloadavg()}
    sessions = stray_sessions(DEFAULT_DATABASE, "soak", "pooldoctor:%")
    result = {
        "environment": env,
        "runs": runs,
        "leftovers": {"processes": strays, "sessions": sessions},
    }
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if strays or sessions else 0


if __name__ == "__main__":
    raise SystemExit(main())
