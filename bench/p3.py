#!/usr/bin/env python3
"""A WASI 0.3 component next to a WASI 0.2 component of the same handler,
in one run.

Usage: p3.py RENGA SECONDS

Builds, with the real Rust buildpack, examples/hello-rust (WASI 0.2,
`wasi:http/proxy`, with wstd) and tests/guests/hello-p3 (WASI 0.3,
`wasi:http/service`, with wasip3): both answer one line of text. Deploys
both to one `renga server`, one web dyno each, a fresh instance per
request, and loads each with wrk -t2 -c32, then at one connection,
alternating twice.
"""
import os
import sys
import tempfile

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
    finally:
        server.stop()


if __name__ == "__main__":
    main()
