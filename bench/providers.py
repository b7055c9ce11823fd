#!/usr/bin/env python3
"""Add-ons served by provider components, next to a built-in backend and to
the provider composed into the app, in one run.

Usage: providers.py RENGA SECONDS

Needs `wac` (the Bytecode Alliance's composition tool: `cargo install
wac-cli`) on PATH, or its path in $WAC. Builds, with the real Rust
buildpack, the add-ons test guest (tests/guests/addons) and the key-value
provider examples/provider-kv-ttl, then serves the same guest three ways on
one `renga server`:

- **built-in**: the app's `renga-kv` add-on (renga's embedded store);
- **provider**: a `kv-ttl` add-on, the provider registered with
  `addons:services:add`: renga runs it in instances of its own and turns
  the app's wasi:keyvalue calls into calls of its exports (what renga does);
- **composed**: the guest and the provider composed into one component at
  build time (`wac plug`), the provider's SQL database being the app's
  `renga-sql` add-on: the alternative renga did not choose.

(The guest imports renga:sql as well, so every app also has a `renga-sql`
add-on.)

Each is loaded with wrk (-t2 -c32, then one connection) on a request that
reads one key once, and on a call-heavy one that reads it 100 times.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import Server, wrk
from addons import build, row


def compose(app, provider, work):
    wac = os.environ.get("WAC") or shutil.which("wac")
    if not wac:
        raise SystemExit("providers.py needs wac: `cargo install wac-cli`, or set WAC")
    out = os.path.join(work, "composed.wasm")
    subprocess.run([wac, "plug", app, "--plug", provider, "-o", out], check=True)
    return out


def main():
    renga, seconds = sys.argv[1], int(sys.argv[2])
    cache = os.environ.get("RENGA_CACHE") or tempfile.mkdtemp(prefix="renga-bench-cache-")
    os.environ["RENGA_CACHE"] = cache
    work = tempfile.mkdtemp(prefix="renga-bench-providers-")
    guest = build("tests/guests/addons", cache)
    provider = build("examples/provider-kv-ttl", cache)
    if not os.path.exists(provider):
        provider = provider.replace("provider-kv-ttl.wasm", "provider_kv_ttl.wasm")
    composed = compose(guest, provider, work)
    server = Server(renga)
    d = f"{seconds}"
    try:
        server.cli("addons:services:add", provider, "--name", "kv-ttl")
        for app, service, wasm in [("builtin", "renga-kv", guest),
                                   ("provider", "kv-ttl", guest),
                                   ("composed", "renga-sql", composed)]:
            server.cli("apps:create", app)
            server.cli("addons:create", service, "-a", app)
            if service != "renga-sql":
                server.cli("addons:create", "renga-sql", "-a", app)
            server.cli("deploy", "--component", wasm, "-a", app)
            server.cli("ps:scale", "web=2", "-a", app)
            status, body, _ = server.get(app, "/kv/fill?bytes=16&key=k")
            assert status == 200, (app, status, body)

        print(f"## One key-value read per request, and 100 ({seconds}s each)\n")
        print("| request | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for reads in [1, 100]:
            for connections, threads in [(32, 2), (1, 1)]:
                for app, label in [("builtin", "built-in renga-kv"),
                                   ("provider", "provider in its own instance"),
                                   ("composed", "provider composed into the app")]:
                    row(f"{reads} read(s), -c{connections}, {label}",
                        wrk(server.url(f"/kv/reads?n={reads}&key=k"), threads=threads,
                            connections=connections, seconds=d, host=f"{app}.localhost"))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
