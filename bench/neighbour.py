#!/usr/bin/env python3
"""A quiet app's latency with and without a misbehaving neighbour, in one run.

Usage: neighbour.py RENGA HELLO_WASM MISBEHAVE_WASM DURATION_SECONDS [ROWDY_CLIENTS]

Starts its own `renga server` (request timeout 10s) with two apps: `quiet`
(HELLO_WASM) and `rowdy` (MISBEHAVE_WASM). Loads `quiet` with wrk (2
threads, 8 connections) for DURATION, first alone, then while ROWDY_CLIENTS
(default 16) clients keep `rowdy` busy: most request `/loop` (a guest that
computes until its timeout), the others `/trap`, `/oom` and `/overflow`.
Prints requests/s, p50 and p99 of `quiet` in both phases, and how many
requests `rowdy` got through. Asserts nothing.
"""
import sys
import threading
import time

from benchlib import Server, wrk


def main() -> int:
    renga, hello, misbehave, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    clients = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    server = Server(renga, "--idle-after", "never", "--timeout", "10s")
    try:
        server.deploy("quiet", hello)
        server.deploy("rowdy", misbehave)
        quiet = lambda: wrk(server.url(), connections=8, seconds=seconds, host="quiet.localhost")
        alone = quiet()

        stop = threading.Event()
        answered = [0]

        def rowdy(path):
            while not stop.is_set():
                try:
                    server.get("rowdy", path)
                    answered[0] += 1
                except OSError:
                    time.sleep(0.01)

        paths = ["/trap", "/oom", "/overflow"] + ["/loop"] * max(1, clients - 3)
        threads = [threading.Thread(target=rowdy, args=(p,), daemon=True) for p in paths[:clients]]
        for t in threads:
            t.start()
        time.sleep(3)
        beside = quiet()
        stop.set()
        print(f"{'quiet app':<30} {'requests/s':>10} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
        for label, (rps, p50, p99, bad, _) in (("alone", alone),
                                               (f"beside {clients} rowdy clients", beside)):
            print(f"{label:<30} {rps:10.0f} {p50 / 1000:8.2f}ms {p99 / 1000:8.2f}ms {bad:8d}")
        print(f"rowdy requests answered (errors included) while measured: {answered[0]}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
