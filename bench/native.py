#!/usr/bin/env python3
"""A Wasm dyno and a native dyno of the same trivial handler, in one run.

Usage: native.py RENGA NATIVE_HELLO SECONDS

The Wasm app is examples/hello-rust built by the real Rust buildpack, a
fresh instance per request. The native app is bench/native_hello.rs (the
smallest hyper server answering the same body; `cargo build --release
--example native-hello`) pushed with git as a Procfile-only app, so it runs
as a sandboxed native process behind the same router. Both get one web
dyno on one `renga server`; each is loaded with wrk -t2 -c32, then at one
connection, alternating twice. Then each app is put to sleep (`ps:idle
1s`) and woken by one request, several times: the time from sending that
request to its last byte (wake to first byte: an instance from precompiled
code for Wasm; a sandbox, a process and its port for native).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import Server, wrk
from addons import build, row

WAKES = 7


def push_native(server, binary, app):
    work = tempfile.mkdtemp(prefix="renga-bench-native-")
    shutil.copy(binary, os.path.join(work, "native-hello"))
    with open(os.path.join(work, "Procfile"), "w") as f:
        f.write("web: ./native-hello $PORT\n")
    env = dict(server.cli_env, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    run = lambda *args: subprocess.run(args, cwd=work, env=env, check=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.cli("apps:create", app)
    run("git", "init", "-q", "-b", "main")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "native hello")
    run(server.renga, "git:remote", "-a", app)
    run("git", "push", "-q", "renga", "main")


def asleep(server, app):
    status, dynos = server.call("GET", f"/apps/{app}/dynos")
    return status == 200 and dynos and all(d["state"] == "idle" for d in dynos)


def wakes(server, app):
    server.cli("ps:idle", "1s", "-a", app)
    took = []
    for _ in range(WAKES):
        deadline = time.monotonic() + 30
        while not asleep(server, app):
            if time.monotonic() > deadline:
                raise SystemExit(f"{app} never went to sleep")
            time.sleep(0.05)
        # The sleeping dyno's processes are gone before the wake is timed.
        time.sleep(0.5)
        status, body, ms = server.get(app, "/")
        assert status == 200, (app, status, body)
        took.append(ms)
    server.cli("ps:idle", "never", "-a", app)
    return took


def main():
    renga, native, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = os.environ.get("RENGA_CACHE") or tempfile.mkdtemp(prefix="renga-bench-cache-")
    os.environ["RENGA_CACHE"] = cache
    wasm = build("examples/hello-rust", cache)
    server = Server(renga, "--idle-after", "never")
    d = f"{seconds}"
    try:
        server.deploy("wasm-hello", wasm)
        push_native(server, native, "native-hello")
        for app in ["wasm-hello", "native-hello"]:
            status, body, _ = server.get(app, "/")
            assert status == 200 and body == b"hello from renga\n", (app, status, body)
        print(f"## The same handler as a Wasm dyno and a native dyno ({seconds}s each)\n")
        print("| dyno | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for _ in range(2):
            for connections, threads in [(32, 2), (1, 1)]:
                for app, label in [("wasm-hello", "Wasm (hello-rust, fresh instance)"),
                                   ("native-hello", "native (native-hello, sandboxed)")]:
                    row(f"{label}, -c{connections}",
                        wrk(server.url("/"), threads=threads, connections=connections,
                            seconds=d, host=f"{app}.localhost"))
        print(f"\n## Wake from zero to the last byte of the first response ({WAKES} wakes)\n")
        print("| dyno | median | min | max |")
        print("| --- | ---: | ---: | ---: |")
        for app, label in [("wasm-hello", "Wasm"), ("native-hello", "native")]:
            took = wakes(server, app)
            print(f"| {label} | {statistics.median(took):.1f} ms | {min(took):.1f} ms "
                  f"| {max(took):.1f} ms |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
