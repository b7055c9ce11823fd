#!/usr/bin/env python3
"""Memory under steady load: does `renga server` give back what each request took?

Usage: soak.py RENGA HELLO_WASM MISBEHAVE_WASM MINUTES [SAMPLE_SECONDS]

Starts its own `renga server`, deploys HELLO_WASM (app `steady`) and
MISBEHAVE_WASM (app `rowdy`), then for MINUTES keeps two loads running:
- wrk, 2 threads and 32 connections, on `steady` (a fresh instance per
  request);
- wrk, 1 thread and 4 connections, on `rowdy`, cycling through requests
  that answer, trap, overflow the stack, sleep and fail while streaming
  (bench/soak.lua).
Every SAMPLE_SECONDS (default 5) it prints the server's RSS. At the end it
prints wrk's figures, RSS after the two-minute warm-up (the pool's slots
become resident as the load first reaches them) and at the end, the change
in percent, and bytes per request over the rest of the run (the requests
after the warm-up counted from wrk's totals at its steady rate); then the
server's live instances and tasks once the load stopped. Asserts nothing.
"""
import json
import os
import sys
import threading
import time

from benchlib import Server, rss_bytes, wrk

# Seconds of load before RSS is taken as the reference.
WARM_UP = 120


def main() -> int:
    renga, hello, misbehave = sys.argv[1], sys.argv[2], sys.argv[3]
    minutes = float(sys.argv[4])
    every = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0
    here = os.path.dirname(os.path.abspath(__file__))
    server = Server(renga, "--idle-after", "never", "--timeout", "5s")
    try:
        server.deploy("steady", hello)
        server.deploy("rowdy", misbehave)
        seconds = int(minutes * 60)
        results = {}

        def load(name, **kwargs):
            results[name] = wrk(server.url(), seconds=seconds, **kwargs)

        loads = [
            threading.Thread(target=load, args=("steady",),
                             kwargs={"host": "steady.localhost"}),
            threading.Thread(target=load, args=("rowdy",),
                             kwargs={"threads": 1, "connections": 4, "host": "rowdy.localhost",
                                     "script": os.path.join(here, "soak.lua")}),
        ]
        for thread in loads:
            thread.start()
        started = time.monotonic()
        samples = []
        print(f"{'time':>6}  {'RSS MiB':>8}")
        while any(thread.is_alive() for thread in loads):
            time.sleep(every)
            t = time.monotonic() - started
            rss = rss_bytes(server.pid)
            samples.append((t, rss))
            print(f"{t:6.0f}  {rss / 2**20:8.1f}", flush=True)
        for thread in loads:
            thread.join()
        warm = next((s for s in samples if s[0] >= WARM_UP), samples[0])
        end = samples[-1]
        after = [s[1] for s in samples if s[0] >= warm[0]]
        total = results["steady"][4] + results["rowdy"][4]
        after_warm = total * max(0.0, (end[0] - warm[0]) / end[0])
        change = (end[1] - warm[1]) / warm[1] * 100
        per_request = (end[1] - warm[1]) / max(1.0, after_warm)
        print()
        print(f"requests: {total} in {seconds}s (steady {results['steady'][0]:.0f}/s, "
              f"rowdy {results['rowdy'][0]:.0f}/s)")
        print(f"RSS after {warm[0]:.0f}s: {warm[1] / 2**20:.1f} MiB; at {end[0]:.0f}s: "
              f"{end[1] / 2**20:.1f} MiB ({change:+.1f}%); from then on min {min(after) / 2**20:.1f}, "
              f"max {max(after) / 2**20:.1f} MiB")
        print(f"bytes per request after the warm-up: {per_request:+.3f} ({after_warm:.0f} requests)")
        time.sleep(3)
        _, stats = server.call("GET", "/server/stats")
        print(f"once the load stopped: {json.dumps(stats['live'])}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
