#!/usr/bin/env python3
"""Add-ons from inside a guest, next to their references, in one run.

Usage: addons.py RENGA KV_DIRECT SECONDS [RENGA_BEFORE]

- The add-ons test guest (tests/guests/addons, built by the Rust buildpack)
  on a `renga server` with a renga-kv and a renga-sql add-on, loaded with
  wrk -t2 -c32: a request that reads a config var and calls no add-on (the
  reference), a key-value get, a set, and an increment (whose final count
  is checked against the requests wrk made).
- `kv-direct SECONDS`: the same backend's get, set and increment called
  directly from 32 tokio tasks, no HTTP or Wasm.
- A SQL point query (one row of 10,000 by primary key) at one connection:
  p50 and p99, next to the no-add-on request at one connection.
- With RENGA_BEFORE (a renga built before the capability seam): hello-rust
  on both servers, alternating before/after twice, fresh instance per
  request, wrk -t2 -c32 and at one connection: the seam's cost.
"""
import http.client
import os
import subprocess
import sys
import tempfile

from benchlib import Server, wrk

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(relative, cache):
    """The component the Rust buildpack builds from a crate of the repo."""
    work = tempfile.mkdtemp(prefix="renga-bench-build-")
    subprocess.run(["cp", "-r", os.path.join(REPO, relative), work], check=True)
    app = os.path.join(work, os.path.basename(relative))
    env_dir = os.path.join(work, "env")
    os.makedirs(env_dir)
    subprocess.run([os.path.join(REPO, "buildpacks/rust/bin/compile"), app,
                    os.path.join(cache, "bench-builds", os.path.basename(relative)), env_dir],
                   check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, RENGA_TOOLS=os.path.join(cache, "tools")))
    return os.path.join(app, os.path.basename(relative) + ".wasm")


def post_script(path, body):
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.method = "POST"\nwrk.path = "{path}"\nwrk.body = "{body}"\n')
    script.close()
    return script.name


def row(label, figures):
    rps, p50, p99, bad, _ = figures
    print(f"| {label} | {rps:,.0f} | {p50:,.0f} µs | {p99:,.0f} µs | {bad} |")


def main():
    renga, direct, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    before = sys.argv[4] if len(sys.argv) > 4 else None
    cache = os.environ.get("RENGA_CACHE") or tempfile.mkdtemp(prefix="renga-bench-cache-")
    os.environ["RENGA_CACHE"] = cache
    guest = build("tests/guests/addons", cache)
    hello = build("examples/hello-rust", cache)

    server = Server(renga)
    try:
        server.cli("apps:create", "kvbench")
        server.cli("addons:create", "renga-kv:standard", "-a", "kvbench")
        server.cli("addons:create", "renga-sql", "-a", "kvbench")
        server.cli("config:set", "GREETING=hi", "-a", "kvbench")
        server.cli("deploy", "--component", guest, "-a", "kvbench")
        server.cli("ps:scale", "web=2", "-a", "kvbench")
        host = "kvbench.localhost"
        assert server.get("kvbench", "/kv/fill?bytes=16&key=k")[0] == 200

        print(f"## Key-value from a guest (wrk -t2 -c32, {seconds}s each)\n")
        print("| request | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        d = f"{seconds}"
        row("no add-on call (wasi:config get)", wrk(server.url("/config?key=GREETING"), seconds=d, host=host))
        row("key-value get", wrk(server.url("/kv/get?key=k"), seconds=d, host=host))
        row("key-value set (16 bytes)", wrk(server.url("/kv/fill?bytes=16&key=k"), seconds=d, host=host))
        figures = wrk(server.url("/kv/incr?key=n"), seconds=d, host=host)
        row("key-value increment", figures)
        status, body, _ = server.get("kvbench", "/kv/get?key=n")
        print(f"\nincrements wrk counted: {figures[4]}; the key holds {body.decode()} "
              f"(wrk counts only requests whose answer arrived)\n")

        out = subprocess.run([direct, str(seconds)], check=True, capture_output=True,
                             text=True).stdout
        print(f"## The same backend called directly (32 tasks, {seconds}s each)\n")
        print("| operation | operations/s |")
        print("| --- | ---: |")
        for line in out.strip().splitlines():
            op, rate = line.split()
            print(f"| {op} | {float(rate):,.0f} |")

        rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) " \
               "INSERT INTO items SELECT i, 'item ' || i FROM n"
        conn_body = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); " + rows
        c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        c.request("POST", "/sql/batch", body=conn_body, headers={"Host": host})
        assert c.getresponse().status == 200
        query = post_script("/sql/query", "SELECT name FROM items WHERE id = 4242")
        print(f"\n## A SQL point query at one connection ({seconds}s)\n")
        print("| request | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        row("no add-on call", wrk(server.url("/config?key=GREETING"), threads=1, connections=1, seconds=d, host=host))
        row("SQL point query", wrk(server.url("/sql/query"), threads=1, connections=1, seconds=d, host=host, script=query))
    finally:
        server.stop()

    if not before:
        print("\n(no RENGA_BEFORE given: the seam's cost is not measured)")
        return
    print(f"\n## hello-rust before and after the capability seam ({seconds}s each)\n")
    print("| server | requests/s (c32) | p50 | p99 | 1 connection p50 | 1 connection p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    servers = {}
    for label, binary in [("before", before), ("after", renga)]:
        s = Server(binary, cache=tempfile.mkdtemp(prefix=f"renga-bench-{label}-"))
        s.deploy("hello", hello)
        servers[label] = s
    try:
        for _ in range(2):
            for label in ["before", "after"]:
                s = servers[label]
                many = wrk(s.url("/"), seconds=d, host="hello.localhost")
                one = wrk(s.url("/"), threads=1, connections=1, seconds=d, host="hello.localhost")
                print(f"| {label} | {many[0]:,.0f} | {many[1]:,.0f} µs | {many[2]:,.0f} µs "
                      f"| {one[1]:,.0f} µs | {one[2]:,.0f} µs |")
    finally:
        for s in servers.values():
            s.stop()


if __name__ == "__main__":
    main()
