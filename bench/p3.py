#!/usr/bin/env python3
"""A WASI 0.3 component next to a WASI 0.2 component of the same handler,
in one run.

Usage: p3.py RENGA SECONDS

Builds, with the real Rust buildpack, examples/hello-rust (WASI 0.2,
`wasi:http/proxy`, with wstd) and tests/guests/hello-p3 (WASI 0.3,
`wasi:http/service`, with wasip3): both answer one line of text. Deploys
both to one `renga server`, one web dyno each, a fresh instance per
request, and loads each with wrk -t2 -c32, then at one connection,
alternating twice. Then the same with instance reuse (`--reuse 128`): a
WASI 0.2 instance serves one request at a time, a WASI 0.3 one several at
once; and a handler that waits 20 ms (`/sleep/20`, WASI 0.3 only), with a
fresh instance per request and with shared ones, counting the instances
alive at the end of each run.
"""
import os
import sys
import tempfile
import threading

from benchlib import Server, wrk
from addons import build, row


def main():
    renga, seconds = sys.argv[1], int(sys.argv[2])
    cache = os.environ.get("RENGA_CACHE") or tempfile.mkdtemp(prefix="renga-bench-cache-")
    os.environ["RENGA_CACHE"] = cache
    p2 = build("examples/hello-rust", cache)
    p3 = build("tests/guests/hello-p3", cache)
    if not os.path.exists(p3):
        p3 = p3.replace("hello-p3.wasm", "hello_p3.wasm")
    server = Server(renga, "--idle-after", "never")
    d = f"{seconds}"
    try:
        server.deploy("wasi-p2", p2)
        server.deploy("wasi-p3", p3)
        for app in ["wasi-p2", "wasi-p3"]:
            assert server.get(app, "/")[0] == 200, app
        print(f"## The same handler as WASI 0.2 and WASI 0.3 ({seconds}s each)\n")
        print("| component | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for _ in range(2):
            for connections, threads in [(32, 2), (1, 1)]:
                for app, label in [("wasi-p2", "WASI 0.2 (hello-rust, wstd)"),
                                   ("wasi-p3", "WASI 0.3 (hello-p3, wasip3)")]:
                    row(f"{label}, -c{connections}",
                        wrk(server.url("/"), threads=threads, connections=connections,
                            seconds=d, host=f"{app}.localhost"))

        for app in ["wasi-p2", "wasi-p3"]:
            server.cli("ps:type", "web=standard-1x", "--reuse", "128", "-a", app)
        print(f"\n## With --reuse 128 ({seconds}s each)\n")
        print("| component | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for _ in range(2):
            for connections, threads in [(32, 2), (1, 1)]:
                for app, label in [("wasi-p2", "WASI 0.2, kept, one request at a time"),
                                   ("wasi-p3", "WASI 0.3, shared, several at once")]:
                    row(f"{label}, -c{connections}",
                        wrk(server.url("/"), threads=threads, connections=connections,
                            seconds=d, host=f"{app}.localhost"))

        print(f"\n## WASI 0.3 handler waiting 20 ms, -c32 ({seconds}s each)\n")
        print("| instances | requests/s | p50 | p99 | non-2xx | instances alive, mean of samples |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for reuse, label in [("0", "fresh per request"), ("128", "shared (--reuse 128)")]:
            server.cli("ps:type", "web=standard-1x", "--reuse", reuse, "-a", "wasi-p3")
            samples, done = [], threading.Event()

            def sample():
                while not done.wait(0.1):
                    samples.append(server.call("GET", "/server/stats")[1]["live"]["instances"])

            sampler = threading.Thread(target=sample)
            sampler.start()
            figures = wrk(server.url("/sleep/20"), threads=2, connections=32, seconds=d,
                          host="wasi-p3.localhost")
            done.set()
            sampler.join()
            alive = sum(samples) / max(len(samples), 1)
            rps, p50, p99, bad, _ = figures
            print(f"| {label} | {rps:,.0f} | {p50:,.0f} µs | {p99:,.0f} µs | {bad} | {alive:.1f} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
