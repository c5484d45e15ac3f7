"""How long ``pooldoctor check`` takes on pooldoctor/demo/leaky, against running the same tasks
naively.

Measured, ``--repeat`` times each:

* ``pooldoctor check`` with the fixture's wrappers (7 modes + 2 wrappers, 12 probe tasks each) as a
  subprocess, with its default ``--jobs 2`` and with ``--jobs 1``;
* the baseline: for each of the same 9 subjects, one after another, a fresh Python process that
  sets Django up with the same settings and database and runs the same 12 probe tasks through the
  same mode or wrapper, with no census, ledger or watchdog (see :func:`naive_subject`).

The baseline waits for the pool the way any real caller does. In the fixture the pool holds 4
connections with a 30 s timeout, so each leaking subject blocks 30 s on its first task after the
pool is exhausted, fails with "couldn't get a connection", then blocks again on the next task; every
baseline process is therefore capped (default: pool timeout + 10 s) and killed at the cap. With the
defaults the baseline takes minutes: that wait is exactly what pooldoctor's watchdog avoids.
``--baseline-timeout`` lowers the pool timeout for the baseline only, to keep runs short.

Run from anywhere with the interpreter pooldoctor is installed in::

    python benchmarks/check_speed.py --repeat 3
    python benchmarks/check_speed.py --repeat 3 --baseline-repeat 1 --json

Every process it starts is killed on the way out (Ctrl-C and SIGTERM included); at the end it kills
and reports any process of this run still alive (pooldoctor's subject processes included, found by
an environment marker) and any baseline database session still open, and exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import suppress
from typing import IO, Any

from _common import (
    ROOT,
    SETTINGS,
    WRAPPERS,
    add_database_option,
    check_command,
    environment,
    environment_lines,
    handle_signals,
    interrupt,
    progress,
    stats,
    stray_sessions,
    sweep,
)

FIXTURE = ROOT / "pooldoctor" / "demo" / "leaky"
ALIAS = "default"
TASKS = 12  # pooldoctor check's default --tasks
# A baseline process may run this long past the pool timeout: enough for set-up, the tasks before
# exhaustion and the first "couldn't get a connection", not enough for a second full wait.
CAP_MARGIN = 10.0
# Before a baseline child has said which pool timeout it uses, it gets this long to set Django up.
SETUP_LIMIT = 60.0
# The baseline's sessions are named pooldoctor-bench:<run id>:<subject index>.
APP_PREFIX = "pooldoctor"
MARKER = "CHECK_SPEED_RUN"


# --- the baseline child: a naive script, run as ``check_speed.py --baseline-child`` -------------


def naive_subject(spec: dict[str, Any], out: IO[str]) -> None:
    """Set Django up and run the probe tasks through one mode or wrapper, nothing else.

    This is what a project's own script or worker does: no census after each task, no watchdog,
    no cleanup at exit. It reuses pooldoctor's loading helpers and probe task so that the work is
    the same as in ``pooldoctor check``; only the measuring is left out.
    """
    from pooldoctor.core import project
    from pooldoctor.core.probes import get_mode
    from pooldoctor.core.probes.task import ProbeFailure, make_probe_task, schedule
    from pooldoctor.core.subjects import apply_wrapper, load_wrapper

    def send(event: str, **payload: Any) -> None:
        out.write(json.dumps({"event": event, **payload}) + "\n")
        out.flush()

    spec_ = project.ProjectSpec(
        settings=spec["settings"],
        alias=ALIAS,
        pythonpath=(),
        cwd=spec["cwd"],
        database=spec["database"],
    )
    project.prepare_sys_path(spec_)
    os.environ["DJANGO_SETTINGS_MODULE"] = spec_.settings
    project.import_settings(spec_.settings)
    entry = project.database_settings(ALIAS)
    project.apply_overrides(entry, spec_, spec["application_name"])
    pool = entry["OPTIONS"].get("pool")
    if spec["pool_timeout"] is not None and pool:
        pool = {**(pool if isinstance(pool, dict) else {}), "timeout": spec["pool_timeout"]}
        entry["OPTIONS"]["pool"] = pool
    import django

    django.setup()
    subject = spec["subject"]
    if subject["kind"] == "mode":
        mode = get_mode(subject["name"])
        reason = mode.unavailable()
        if reason:
            send("skip", detail=reason)
            return
        run_task = mode.wrap(make_probe_task(ALIAS, thread_sensitive=mode.thread_sensitive))
    else:
        wrapper = subject["name"]
        run_task = apply_wrapper(wrapper, load_wrapper(wrapper), make_probe_task(ALIAS))
    timeout = pool.get("timeout", 30.0) if isinstance(pool, dict) else 30.0 if pool else None
    send("start", pool_timeout=timeout)
    for index, kind in enumerate(schedule(spec["tasks"])):
        started = time.monotonic()
        error = None
        try:
            run_task(kind)
        except ProbeFailure:
            pass  # a failure the probe schedules on purpose
        except Exception as exc:
            error = exc
        send(
            "task",
            index=index,
            seconds=round(time.monotonic() - started, 4),
            error=None if error is None else f"{type(error).__name__}: {error}"[:300],
            pool_timeout=error is not None and is_pool_timeout(error),
        )
    send("done")


def is_pool_timeout(exc: BaseException) -> bool:
    """Django re-raises psycopg_pool's PoolTimeout as its OperationalError: look down the chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "PoolTimeout" or "couldn't get a connection" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def baseline_child_main() -> int:
    spec = json.loads(sys.stdin.read())
    # Our JSON lines own the real stdout; whatever the project prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    naive_subject(spec, out)
    return 0


# --- results -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckSubject:
    subject: str
    verdict: str
    stop: str
    tasks_run: int
    seconds: float
    """The subject process's own time, as pooldoctor's JSON report gives it."""


@dataclasses.dataclass(frozen=True)
class CheckRun:
    jobs: int
    seconds: float
    """Wall time of the whole ``pooldoctor check`` process."""
    report_seconds: float
    exit_code: int
    pool: dict[str, Any]
    """The alias's pool settings as pooldoctor read them from the fixture."""
    subjects: tuple[CheckSubject, ...]


@dataclasses.dataclass(frozen=True)
class BaselineSubject:
    subject: str
    seconds: float
    """Wall time of the subject's process, from start to exit or kill."""
    outcome: str
    """``done``, ``killed at cap``, ``skipped`` or ``crashed``."""
    tasks_run: int
    pool_timeouts: int
    first_pool_timeout: int | None
    """1-based number of the first task that failed with the pool timeout."""
    detail: str | None = None


@dataclasses.dataclass(frozen=True)
class BaselineRun:
    seconds: float
    pool_timeout: float | None
    cap: float | None
    subjects: tuple[BaselineSubject, ...]

    @property
    def hit_pool_timeout(self) -> int:
        return sum(1 for s in self.subjects if s.pool_timeouts)

    @property
    def killed(self) -> int:
        return sum(1 for s in self.subjects if s.outcome == "killed at cap")


# --- processes ---------------------------------------------------------------------------------


class Children:
    """Every process the benchmark started and has not reaped yet.

    Each gets ``CHECK_SPEED_RUN=<id>`` in its environment, which its own children inherit, so
    :func:`sweep` can find anything of ours that outlived its parent (pooldoctor's subject
    processes run in their own sessions, out of reach of a process-group kill).
    """

    def __init__(self, bench_id: str) -> None:
        self.env = {**os.environ, MARKER: bench_id}
        self._procs: dict[int, tuple[subprocess.Popen[str], bool]] = {}

    def start(self, args: list[str], *, own_session: bool) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            args,
            cwd=FIXTURE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=own_session,
            env=self.env,
        )
        self._procs[proc.pid] = (proc, own_session)
        return proc

    def end(self, proc: subprocess.Popen[str]) -> None:
        own_session = self._procs.pop(proc.pid, (proc, True))[1]
        if proc.poll() is not None:
            return
        if own_session:
            # A baseline child: its whole session goes, sockets with it.
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        interrupt(proc)  # pooldoctor itself

    def end_all(self) -> None:
        for proc, _ in list(self._procs.values()):
            self.end(proc)


def pooldoctor_command(database: str, jobs: int) -> list[str]:
    command = check_command(database)
    return [*command, "--jobs", "1"] if jobs == 1 else command


def run_pooldoctor(children: Children, database: str, jobs: int) -> CheckRun:
    started = time.perf_counter()
    proc = children.start(pooldoctor_command(database, jobs), own_session=False)
    try:
        stdout, stderr = proc.communicate()
    finally:
        children.end(proc)
    seconds = time.perf_counter() - started
    # 1 is the expected answer here: the fixture's wrappers leak.
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pooldoctor check exited with {proc.returncode}:\n{stderr.strip()}")
    report = json.loads(stdout)
    subjects = tuple(
        CheckSubject(r["subject"], r["verdict"], r["stop"], r["tasks"], r["seconds"])
        for r in report["results"]
    )
    return CheckRun(
        jobs=jobs,
        seconds=round(seconds, 3),
        report_seconds=report["seconds"],
        exit_code=proc.returncode,
        pool=report["database"]["pool"] or {},
        subjects=subjects,
    )


def subjects_to_run() -> list[dict[str, str]]:
    from pooldoctor.core.probes import all_modes

    modes = [{"kind": "mode", "name": m.name} for m in all_modes()]
    return modes + [{"kind": "wrapper", "name": w} for w in WRAPPERS]


def run_baseline(
    children: Children,
    database: str,
    pool_timeout: float | None,
    cap: float | None,
    bench_id: str,
) -> BaselineRun:
    from pooldoctor.core.project import parse_database_url

    override = parse_database_url(database)
    started = time.perf_counter()
    results = []
    seen_timeout: float | None = None
    for index, subject in enumerate(subjects_to_run()):
        spec = {
            "settings": SETTINGS,
            "cwd": str(FIXTURE),
            "database": override,
            "subject": subject,
            "tasks": TASKS,
            "pool_timeout": pool_timeout,
            "application_name": f"{APP_PREFIX}-bench:{bench_id}:{index}",
        }
        result, seen_timeout = run_baseline_subject(children, spec, cap)
        results.append(result)
        progress(f"  baseline {result.subject}: {result.seconds:.2f} s, {result.outcome}")
    seconds = time.perf_counter() - started
    effective_cap = cap if cap is not None or seen_timeout is None else seen_timeout + CAP_MARGIN
    return BaselineRun(round(seconds, 3), seen_timeout, effective_cap, tuple(results))


def run_baseline_subject(
    children: Children, spec: dict[str, Any], cap: float | None
) -> tuple[BaselineSubject, float | None]:
    started = time.perf_counter()
    proc = children.start([sys.executable, __file__, "--baseline-child"], own_session=True)
    assert proc.stdin and proc.stdout and proc.stderr
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    threading.Thread(target=stderr.extend, args=(proc.stderr,), daemon=True).start()
    proc.stdin.write(json.dumps(spec))
    proc.stdin.close()

    deadline = started + SETUP_LIMIT
    pool_timeout: float | None = None
    tasks: list[dict[str, Any]] = []
    outcome, detail = "crashed", None
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                outcome = "killed at cap"
                break
            if line is None:
                proc.wait()
                last = next((s.strip() for s in reversed(stderr) if s.strip()), "")
                detail = f"exited with {proc.returncode} before finishing: {last}"
                break
            event = json.loads(line)
            if event["event"] == "start":
                pool_timeout = event["pool_timeout"]
                limit = cap if cap is not None else (pool_timeout or 0.0) + CAP_MARGIN
                deadline = started + limit
            elif event["event"] == "task":
                tasks.append(event)
            elif event["event"] in ("done", "skip"):
                outcome = "done" if event["event"] == "done" else "skipped"
                detail = event.get("detail")
                proc.wait()  # the naive script's own exit is part of its cost
                break
    finally:
        children.end(proc)
    timeouts = [t["index"] + 1 for t in tasks if t["pool_timeout"]]
    result = BaselineSubject(
        subject=spec["subject"]["name"],
        seconds=round(time.perf_counter() - started, 3),
        outcome=outcome,
        tasks_run=len(tasks),
        pool_timeouts=len(timeouts),
        first_pool_timeout=timeouts[0] if timeouts else None,
        detail=detail,
    )
    return result, pool_timeout


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        if line.startswith("{"):
            lines.put(line)
    lines.put(None)


# --- report ------------------------------------------------------------------------------------


def summarize(
    env: dict[str, Any],
    database: str,
    checks: dict[int, list[CheckRun]],
    baselines: list[BaselineRun],
    leftovers: dict[str, list[str]],
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for jobs, runs in checks.items():
        rows[f"pooldoctor check --jobs {jobs}"] = {
            "runs": len(runs),
            **stats([r.seconds for r in runs]),
        }
    if baselines:
        rows["baseline"] = {"runs": len(baselines), **stats([b.seconds for b in baselines])}
        for name, row in rows.items():
            if name != "baseline":
                row["baseline_ratio"] = round(rows["baseline"]["median"] / row["median"], 1)
    from pooldoctor.core.project import mask_url

    return {
        "environment": env,
        "database": mask_url(database),
        "subjects": len(subjects_to_run()),
        "tasks_per_subject": TASKS,
        "commands": {
            f"jobs {jobs}": [*pooldoctor_command(mask_url(database), jobs)] for jobs in checks
        },
        "summary": rows,
        "pooldoctor_runs": [dataclasses.asdict(r) for runs in checks.values() for r in runs],
        "baseline_runs": [
            {**dataclasses.asdict(b), "hit_pool_timeout": b.hit_pool_timeout, "killed": b.killed}
            for b in baselines
        ],
        "leftovers": leftovers,
    }


def render(
    result: dict[str, Any], checks: dict[int, list[CheckRun]], baselines: list[BaselineRun]
) -> str:
    pool = next(iter(checks.values()))[0].pool
    lines = [
        f"pooldoctor check speed on pooldoctor/demo/leaky: {result['subjects']} subjects "
        f"(7 modes + 2 wrappers), {TASKS} probe tasks each",
        *environment_lines(result["environment"]),
        f"database  {result['database']}",
        f"pool      fixture: max_size {pool.get('max_size')}, timeout {pool.get('timeout')} s",
    ]
    if baselines:
        b = baselines[0]
        lines.append(
            f"baseline  pool timeout {b.pool_timeout:g} s, each subject process killed at "
            f"{b.cap:g} s; subjects run one at a time"
        )
    lines += ["", f"{'':34}{'runs':>5}{'median':>10}{'min':>10}{'max':>10}{'baseline/this':>15}"]
    for name, row in result["summary"].items():
        label = "naive baseline (no census)" if name == "baseline" else name
        ratio = f"{row['baseline_ratio']:.1f}x" if "baseline_ratio" in row else "-"
        lines.append(
            f"{label:34}{row['runs']:>5}{row['median']:>9.2f}s{row['min']:>9.2f}s"
            f"{row['max']:>9.2f}s{ratio:>15}"
        )
    lines.append("")
    if baselines:
        hit = span([b.hit_pool_timeout for b in baselines])
        killed = span([b.killed for b in baselines])
        lines.append(
            f"baseline: {hit} of {result['subjects']} subjects hit the pool timeout "
            f'("couldn\'t get a connection"); {killed} killed at the cap'
        )
    exhausted = span([sum(s.stop == "exhausted" for s in r.subjects) for r in all_runs(checks)])
    lines.append(
        f"pooldoctor: {exhausted} of {result['subjects']} subjects stopped at pool exhaustion "
        "without waiting for the pool timeout"
    )
    lines += ["", *per_subject(checks, baselines)]
    leftovers = result["leftovers"]
    lines += [
        "",
        f"leftover processes: {len(leftovers['processes'])}, leftover baseline sessions: "
        f"{len(leftovers['sessions'])}",
    ]
    return "\n".join(lines)


def span(values: list[int]) -> str:
    """``4`` when every run agrees, else ``3-4``."""
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def all_runs(checks: dict[int, list[CheckRun]]) -> list[CheckRun]:
    return [run for runs in checks.values() for run in runs]


def per_subject(checks: dict[int, list[CheckRun]], baselines: list[BaselineRun]) -> list[str]:
    """Median seconds per subject: pooldoctor's subject process (--jobs 1) and the baseline's."""
    runs = checks.get(1) or next(iter(checks.values()))
    jobs = 1 if 1 in checks else next(iter(checks))
    names = [s.subject for s in runs[0].subjects]
    header = f"{'subject':38}{'pooldoctor -j' + str(jobs):>16}  {'verdict (all runs)':28}"
    if baselines:
        header += f"{'baseline':>10}  baseline outcome"
    lines = ["per subject (median seconds):", header.rstrip()]
    clean_pd = clean_base = 0.0
    for index, name in enumerate(names):
        mine = [r.subjects[index] for r in runs]
        everywhere = [r.subjects[index] for r in all_runs(checks)]
        seconds = statistics.median(s.seconds for s in mine)
        verdicts = "/".join(sorted({s.verdict for s in everywhere}))
        stops = "/".join(sorted({s.stop for s in everywhere}))
        verdict = f"{verdicts} ({stops}, {span([s.tasks_run for s in everywhere])} tasks)"
        line = f"{name:38}{seconds:>15.2f}s  {verdict:28}"
        if baselines:
            theirs = [b.subjects[index] for b in baselines]
            base = statistics.median(s.seconds for s in theirs)
            firsts = [s.first_pool_timeout for s in theirs if s.first_pool_timeout]
            if firsts:
                outcome = f"pool timeout at task {span(firsts)}"
            else:
                outcome = f"{span([s.tasks_run for s in theirs])}/{TASKS} tasks"
                clean_pd += seconds
                clean_base += base
            ends = sorted({s.outcome for s in theirs} - {"done"})
            if ends:
                outcome += ", " + "/".join(ends)
            line += f"{base:>9.2f}s  {outcome}"
        lines.append(line.rstrip())
    if baselines:
        lines.append(
            f"{'sum, subjects that never waited for the pool':54}{clean_pd:>7.2f}s  {'':28}"
            f"{clean_base:>9.2f}s"
        )
    return lines


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time pooldoctor check on pooldoctor/demo/leaky against a naive baseline that "
        "runs the same tasks through the same modes and wrappers without pooldoctor's census.",
        epilog="With the default --baseline-timeout the baseline takes minutes (each leaking "
        "subject waits for the 30 s pool timeout): that wait is what pooldoctor avoids.",
    )
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="default: 3")
    parser.add_argument(
        "--baseline-repeat",
        type=int,
        metavar="N",
        help="baseline runs (default: --repeat; 0 skips the baseline)",
    )
    add_database_option(parser)
    parser.add_argument(
        "--baseline-timeout",
        type=float,
        metavar="SECONDS",
        help="the pool timeout in the baseline's processes (default: the fixture's, 30 s)",
    )
    parser.add_argument(
        "--baseline-cap",
        type=float,
        metavar="SECONDS",
        help=f"kill a baseline subject process after this long (default: pool timeout + "
        f"{CAP_MARGIN:g} s)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.baseline_repeat is None:
        args.baseline_repeat = args.repeat
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_child:
        return baseline_child_main()
    handle_signals()
    bench_id = uuid.uuid4().hex[:8]
    children = Children(bench_id)
    strays: list[str] = []
    checks: dict[int, list[CheckRun]] = {2: [], 1: []}
    baselines: list[BaselineRun] = []
    try:
        env = environment(args.database, "check_speed")
        load_before = os.getloadavg()
        progress("warm-up: one untimed pooldoctor check")
        run_pooldoctor(children, args.database, jobs=2)
        for n in range(args.repeat):
            for jobs in checks:
                run = run_pooldoctor(children, args.database, jobs)
                checks[jobs].append(run)
                progress(
                    f"run {n + 1}/{args.repeat}: pooldoctor check --jobs {jobs}: "
                    f"{run.seconds:.2f} s"
                )
        for n in range(args.baseline_repeat):
            progress(f"baseline run {n + 1}/{args.baseline_repeat}")
            baselines.append(
                run_baseline(
                    children, args.database, args.baseline_timeout, args.baseline_cap, bench_id
                )
            )
    except KeyboardInterrupt:
        progress("check_speed: interrupted; child processes killed")
        return 130
    finally:
        children.end_all()
        strays = sweep(MARKER, bench_id, "check_speed")
    env["load_average"] = {"before": load_before, "after": os.getloadavg()}
    # pooldoctor's own sessions carry a run id the benchmark cannot see, so they are covered by
    # sweep() instead: a session outlives its client process by at most a moment.
    sessions = stray_sessions(args.database, "check_speed", f"{APP_PREFIX}-bench:{bench_id}:%")
    leftovers = {"processes": strays, "sessions": sessions}
    result = summarize(env, args.database, checks, baselines, leftovers)
    print(json.dumps(result, indent=2) if args.json else render(result, checks, baselines))
    return 1 if leftovers["processes"] or leftovers["sessions"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
