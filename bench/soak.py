#!/usr/bin/env python3
"""Memory under steady load: does `renga server` give back what each request took?

Usage: soak.py RENGA HELLO_WASM MISBEHAVE_WASM MINUTES [SAMPLE_SECONDS]

Starts its own `renga server`, deploys HELLO_WASM (app `steady`) and
MISBEHAVE_WASM (app `rowdy`), then for MINUTES keeps two loads running:
- wrk, 2 threads and 32 connections, on `steady` (a fresh instance per
  request);
- wrk, 1 thread and 4 connections, on `rowdy`, cycling through requests
  that trap, overflow the stack, sleep and answer (bench/soak.lua).
Every SAMPLE_SECONDS (default 5) it prints the server's RSS. At the end it
prints wrk's figures, RSS after the warm-up minute and at the end, the
change in percent, and bytes per request over the rest of the run (the
requests after the warm-up counted from wrk's totals at its steady rate);
then the server's live instances and tasks once the load stopped.
Asserts nothing.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    renga, hello, misbehave = sys.argv[1], sys.argv[2], sys.argv[3]
    minutes = float(sys.argv[4])
    every = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0
    here = os.path.dirname(os.path.abspath(__file__))
    work = tempfile.mkdtemp(prefix="renga-soak-")
    api_port, http_port = free_port(), free_port()
    token = "soak-" + os.urandom(8).hex()
    env = dict(os.environ, RENGA_DATA=os.path.join(work, "data"), RENGA_ADMIN_TOKEN=token)
    env.setdefault("RENGA_CACHE", os.path.join(work, "cache"))
    server = subprocess.Popen(
        [renga, "server", "--api", f"127.0.0.1:{api_port}", "--http", f"127.0.0.1:{http_port}",
         "--idle-after", "never", "--timeout", "5s"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = dict(env, RENGA_API_URL=f"http://127.0.0.1:{api_port}", RENGA_API_KEY=token)

    def api(method, path):
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return json.loads(response.read() or b"null")

    try:
        for _ in range(200):
            try:
                api("GET", "/apps")
                break
            except OSError:
                time.sleep(0.05)
        for app, wasm in (("steady", hello), ("rowdy", misbehave)):
            subprocess.run([renga, "apps:create", app], env=cli, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([renga, "deploy", "--component", wasm, "-a", app], env=cli, check=True,
                           stdout=subprocess.DEVNULL)
        seconds = int(minutes * 60)
        url = f"http://127.0.0.1:{http_port}/"
        loads = [
            subprocess.Popen(["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", "Host: steady.localhost", url],
                             stdout=subprocess.PIPE, text=True),
            subprocess.Popen(["wrk", "-t1", "-c4", f"-d{seconds}s", "-s", os.path.join(here, "soak.lua"),
                              "-H", "Host: rowdy.localhost", url],
                             stdout=subprocess.PIPE, text=True),
        ]
        started = time.monotonic()
        samples = []
        print(f"{'time':>6}  {'RSS MiB':>8}")
        while any(load.poll() is None for load in loads):
            time.sleep(every)
            t = time.monotonic() - started
            rss = rss_bytes(server.pid)
            samples.append((t, rss))
            print(f"{t:6.0f}  {rss / 2**20:8.1f}", flush=True)
        outputs = [load.communicate()[0] for load in loads]
        warm = next((s for s in samples if s[0] >= 60), samples[0])
        end = samples[-1]
        after = [s[1] for s in samples if s[0] >= warm[0]]
        totals = [re.search(r"(\d+) requests in", out) for out in outputs]
        total = sum(int(t.group(1)) for t in totals if t)
        after_warm = total * max(0.0, (end[0] - warm[0]) / end[0])
        change = (end[1] - warm[1]) / warm[1] * 100
        per_request = (end[1] - warm[1]) / max(1.0, after_warm)
        rates = [re.search(r"Requests/sec:\s+([\d.]+)", out) for out in outputs]
        print()
        print(f"requests: {total} in {seconds}s (steady {rates[0].group(1) if rates[0] else '?'}/s, "
              f"rowdy {rates[1].group(1) if rates[1] else '?'}/s)")
        print(f"RSS after {warm[0]:.0f}s: {warm[1] / 2**20:.1f} MiB; at {end[0]:.0f}s: "
              f"{end[1] / 2**20:.1f} MiB ({change:+.1f}%); from then on min {min(after) / 2**20:.1f}, "
              f"max {max(after) / 2**20:.1f} MiB")
        print(f"bytes per request after the warm-up: {per_request:+.3f} ({after_warm:.0f} requests)")
        stats = api("GET", "/server/stats")
        print(f"once the load stopped: {json.dumps(stats['live'])}")
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
