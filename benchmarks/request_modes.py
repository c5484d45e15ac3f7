"""How long ``pooldoctor check`` takes per request mode, beside the plain way of sending the same
requests.

For each request mode and each connection set-up (pool with a 30 s timeout; no pool with
``CONN_MAX_AGE = 0``; no pool with ``CONN_MAX_AGE = 60``), on ``tests/projects/webproj``:

* pooldoctor: ``pooldoctor check --modes MODE --requests 12 --concurrency C`` (one subject
  process, a census after every round), wall time of the whole command;
* the plain way: a fresh Python process that sets Django up and sends the same 12 requests to the
  same view through Django's ASGI handler with httpx, ``C`` at a time, and nothing else; a request
  that waits for a pool slot waits for the pool's timeout, as in production.

    python benchmarks/request_modes.py --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "tests" / "projects" / "webproj"
SETUPS = {
    "pool": 'DATABASES["default"]["OPTIONS"]["pool"]["timeout"] = 30',
    "CONN_MAX_AGE=0": 'DATABASES["default"]["OPTIONS"].pop("pool")',
    "CONN_MAX_AGE=60": 'DATABASES["default"]["OPTIONS"].pop("pool")\n'
    'DATABASES["default"]["CONN_MAX_AGE"] = 60',
}
PLAIN = """
import asyncio, os, sys
import django
django.setup()
import httpx
from django.core.asgi import get_asgi_application
from pooldoctor.core.probes import views
from pooldoctor.core.probes.task import schedule
mode, requests, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
views.install("default")
app = get_asgi_application()

async def main():
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                 timeout=None) as client:
        kinds = schedule(-(-requests // concurrency))
        for kind in kinds:
            await asyncio.gather(*(client.get(views.path_for(mode, kind))
                                   for _ in range(concurrency)), return_exceptions=True)

asyncio.run(main())
os._exit(0)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(command, env=env, cwd=WEB, capture_output=True, check=False, timeout=900)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=12)
    args = parser.parse_args()
    from pooldoctor.core.probes import all_modes

    modes = [m.name for m in all_modes() if m.request]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.requests} requests, {args.concurrency} at a time; wall time per command")
        print(f"{'set-up':16} {'mode':24} {'pooldoctor':>11} {'plain':>9}  verdict")
        for setup, change in SETUPS.items():
            name = "bench_" + "".join(c for c in setup if c.isalnum()).lower()
            Path(tmp, f"{name}.py").write_text(f"from webproj.settings import *\n{change}\n")
            env = {**os.environ, "PYTHONPATH": f"{tmp}:{WEB}", "DJANGO_SETTINGS_MODULE": name}
            for mode in modes:
                check = [sys.executable, "-m", "pooldoctor", "check", "--settings", name,
                         "--modes", mode, "--requests", str(args.requests),
                         "--concurrency", str(args.concurrency), "--format", "json"]  # fmt: skip
                started = time.monotonic()
                proc = subprocess.run(check, env=env, cwd=WEB, capture_output=True, text=True)
                ours = time.monotonic() - started
                verdict = json.loads(proc.stdout)["results"][0]["verdict"] if proc.stdout else "?"
                plain = timed([sys.executable, "-c", PLAIN, mode, str(args.requests),
                               str(args.concurrency)], env)  # fmt: skip
                print(f"{setup:16} {mode:24} {ours:10.2f}s {plain:8.2f}s  {verdict}")


if __name__ == "__main__":
    main()
