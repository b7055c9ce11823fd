#!/usr/bin/env python3
"""Two renga builds side by side on the request path, in one run.

Usage: compare.py RENGA_A RENGA_B HELLO_WASM [ROUNDS] [SECONDS]

Starts a `renga server` from each binary (same flags, own data folder),
deploys HELLO_WASM to each, then alternates wrk runs between them, ROUNDS
times (default 3) for SECONDS each (default 10): 2 threads and 32
connections, then 1 connection. Prints every run and the medians, so that a
change to the router or the per-request path is measured before and after
on the same machine at the same time, with the server's CPU time per
request (utime + stime from /proc/PID/stat around each run), which is
steadier than requests/s. Asserts nothing.

FLAGS_A and FLAGS_B (environment) add `renga server` flags to one side, so
that one binary can be compared with itself: for the cost of counting
metrics, `FLAGS_B=--no-metrics compare.py renga renga HELLO_WASM`.
"""
import os
import statistics
import sys

from benchlib import Server, cpu_seconds, wrk


def main() -> int:
    binaries = sys.argv[1:3]
    hello = sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    seconds = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    servers = []
    try:
        for renga, side in zip(binaries, "AB"):
            extra = os.environ.get(f"FLAGS_{side}", "").split()
            server = Server(renga, "--idle-after", "never", *extra)
            server.deploy("hello", hello)
            servers.append(server)
        results = {(i, mode): [] for i in range(2) for mode in ("c32", "c1")}
        for round_ in range(rounds):
            for i, server in enumerate(servers):
                for mode, (t, c) in (("c32", (2, 32)), ("c1", (1, 1))):
                    before = cpu_seconds(server.pid)
                    r = wrk(server.url(), threads=t, connections=c, seconds=seconds,
                            host="hello.localhost")
                    cpu = (cpu_seconds(server.pid) - before) / max(r[4], 1) * 1e6
                    r = r + (cpu,)
                    results[(i, mode)].append(r)
                    print(f"round {round_ + 1} {'AB'[i]} {mode}: {r[0]:9.0f} req/s  p50 {r[1]:7.0f}us  "
                          f"p99 {r[2]:7.0f}us  cpu {cpu:6.1f}us/req", flush=True)
        print()
        for i, server in enumerate(servers):
            print(f"{'AB'[i]}: {server.renga}")
        print(f"{'':4}{'c32 req/s':>11}{'c32 p50':>10}{'c32 p99':>10}{'c32 cpu/req':>13}"
              f"{'c1 p50':>9}{'c1 p99':>9}{'c1 cpu/req':>12}")
        for i in range(2):
            c32, c1 = results[(i, "c32")], results[(i, "c1")]
            med = lambda rows, k: statistics.median(r[k] for r in rows)
            print(f"{'AB'[i]:4}{med(c32, 0):11.0f}{med(c32, 1):8.0f}us{med(c32, 2):8.0f}us"
                  f"{med(c32, 5):11.1f}us{med(c1, 1):7.0f}us{med(c1, 2):7.0f}us{med(c1, 5):10.1f}us")
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
