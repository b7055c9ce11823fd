#!/usr/bin/env python3
"""The control API's own latency: two renga builds side by side, in one run.

Usage: api.py RENGA_A RENGA_B [ROUNDS] [SECONDS]

Starts a `renga server` from each binary (own data folder), creates an app
with a few config vars and releases on each, then alternates wrk runs
between them, ROUNDS times (default 3) for SECONDS each (default 5), on
three reads that every client makes (`GET /apps/APP`, its config vars, its
releases) at one connection and at 8. Prints every run and the medians, so
that a change to the API's router is measured before and after on the same
machine at the same time. Asserts nothing.
"""
import statistics
import sys

from benchlib import Server, wrk

PATHS = ["/apps/bench", "/apps/bench/config-vars", "/apps/bench/releases"]
MODES = {"c1": (1, 1), "c8": (2, 8)}


def main() -> int:
    binaries = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    servers = []
    try:
        for renga in binaries:
            server = Server(renga)
            server.cli("apps:create", "bench")
            for n in range(5):
                server.cli("config:set", f"VAR_{n}=value-{n}", "-a", "bench")
            servers.append(server)
        results = {}
        for round_ in range(rounds):
            for i, server in enumerate(servers):
                auth = [f"Authorization: Bearer {server.token}",
                        "Accept: application/vnd.heroku+json; version=3"]
                for path in PATHS:
                    for mode, (t, c) in MODES.items():
                        r = wrk(f"http://127.0.0.1:{server.api_port}{path}", threads=t,
                                connections=c, seconds=seconds, headers=auth)
                        results.setdefault((i, path, mode), []).append(r)
                        print(f"round {round_ + 1} {'AB'[i]} {mode} {path:26} {r[0]:8.0f} req/s  "
                              f"p50 {r[1]:6.0f}us  p99 {r[2]:6.0f}us  non-2xx {r[3]}", flush=True)
        print()
        print(f"| path | connections | A req/s | B req/s | A p50 µs | B p50 µs |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for path in PATHS:
            for mode in MODES:
                a, b = results[(0, path, mode)], results[(1, path, mode)]
                med = lambda runs, k: statistics.median(r[k] for r in runs)
                print(f"| `{path}` | {MODES[mode][1]} | {med(a, 0):.0f} | {med(b, 0):.0f} | "
                      f"{med(a, 1):.0f} | {med(b, 1):.0f} |")
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
