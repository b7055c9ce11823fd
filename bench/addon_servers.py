#!/usr/bin/env python3
"""Add-ons on real servers from inside a guest, next to native clients of
the same servers, in one run.

Usage: addon_servers.py RENGA SECONDS

Starts a throwaway PostgreSQL (as `nobody` when run as root) and Redis on
ephemeral ports, and a `renga server --postgres URL --redis URL` with the
add-ons test guest (tests/guests/addons, built by the Rust buildpack) on an
app with a `renga-postgres` and a `renga-kv:redis` add-on, and a second app
with the embedded `renga-kv`. Then:

- a point query (one row of 10,000 by primary key) through `renga:sql` on
  PostgreSQL at one connection, next to the same query from `pgbench`
  (PostgreSQL's own C client) logged in as the add-on's role, one client;
- key-value get and set through `wasi:keyvalue` on Redis (wrk -t2 -c32),
  next to the embedded backend's, and to `redis-benchmark -c 32` on the
  same Redis.
"""
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import Server, free_port, wrk
from addons import build, post_script, row


def as_server_user(argv):
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + argv
    return argv


def wait_port(port):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listened on {port}")


def start_postgres():
    bin_dir = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[-1]
    folder = tempfile.mkdtemp(prefix="renga-bench-pg-")
    os.chmod(folder, 0o755)
    with open(os.path.join(folder, "pw"), "w") as f:
        f.write("bench")
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "65534:65534", folder], check=True)
    data = os.path.join(folder, "data")
    subprocess.run(as_server_user([f"{bin_dir}/initdb", "-D", data, "-U", "renga_admin",
                                   "--auth-local=trust", "--auth-host=scram-sha-256",
                                   f"--pwfile={folder}/pw", "--no-sync", "--locale=C"]),
                   check=True, stdout=subprocess.DEVNULL, cwd=folder)
    port = free_port()
    proc = subprocess.Popen(as_server_user([f"{bin_dir}/postgres", "-D", data, "-p", str(port),
                                            "-k", folder, "-c", "listen_addresses=127.0.0.1",
                                            "-c", "fsync=off", "-c", "max_connections=200"]),
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, folder, bin_dir, f"postgres://renga_admin:bench@127.0.0.1:{port}/postgres"


def start_redis():
    folder = tempfile.mkdtemp(prefix="renga-bench-redis-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, folder, port, f"redis://127.0.0.1:{port}/0"


def main():
    renga, seconds = sys.argv[1], int(sys.argv[2])
    cache = os.environ.get("RENGA_CACHE") or tempfile.mkdtemp(prefix="renga-bench-cache-")
    os.environ["RENGA_CACHE"] = cache
    guest = build("tests/guests/addons", cache)
    pg, pg_folder, pg_bin, pg_url = start_postgres()
    redis, redis_folder, redis_port, redis_url = start_redis()
    server = Server(renga, "--postgres", pg_url, "--redis", redis_url)
    d = f"{seconds}"
    try:
        server.cli("apps:create", "servers")
        server.cli("addons:create", "renga-postgres", "-a", "servers")
        server.cli("addons:create", "renga-kv:redis", "-a", "servers")
        server.cli("deploy", "--component", guest, "-a", "servers")
        server.cli("ps:scale", "web=2", "-a", "servers")
        server.cli("apps:create", "embedded")
        server.cli("addons:create", "renga-kv:standard", "-a", "embedded")
        server.cli("addons:create", "renga-sql", "-a", "embedded")
        server.cli("deploy", "--component", guest, "-a", "embedded")
        server.cli("ps:scale", "web=2", "-a", "embedded")
        database_url = subprocess.run([renga, "config:get", "DATABASE_URL", "-a", "servers"],
                                      env=server.cli_env, check=True, capture_output=True,
                                      text=True).stdout.strip()

        setup = ("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT); "
                 "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 10000) AS i")
        subprocess.run(["psql", database_url, "-q", "-c", setup], check=True)
        print(f"## A point query through renga:sql on PostgreSQL, at one connection ({seconds}s)\n")
        print("| request | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        host = "servers.localhost"
        row("no add-on call (wasi:config get)",
            wrk(server.url("/config?key=DATABASE_NAME"), threads=1, connections=1, seconds=d, host=host))
        query = post_script("/sql/query", "SELECT name FROM items WHERE id = 4242")
        row("SQL point query (renga-postgres)",
            wrk(server.url("/sql/query"), threads=1, connections=1, seconds=d, host=host, script=query))
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write("SELECT name FROM items WHERE id = 4242;\n")
            script = f.name
        out = subprocess.run([f"{pg_bin}/pgbench", "-n", "-c", "1", "-T", d, "-M", "prepared",
                              "-f", script, database_url],
                             check=True, capture_output=True, text=True).stdout
        tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
        latency = float(re.search(r"latency average = ([0-9.]+) ms", out).group(1))
        print(f"| pgbench, the same query, prepared, 1 client | {tps:,.0f} | "
              f"{latency * 1000:,.0f} µs (mean) | | 0 |")

        print(f"\n## Key-value on Redis from a guest (wrk -t2 -c32, {seconds}s each)\n")
        print("| request | requests/s | p50 | p99 | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for app, label in [("servers", "Redis"), ("embedded", "embedded")]:
            h = f"{app}.localhost"
            assert server.get(app, "/kv/fill?bytes=16&key=k")[0] == 200
            row(f"get ({label})", wrk(server.url("/kv/get?key=k"), seconds=d, host=h))
            row(f"set, 16 bytes ({label})", wrk(server.url("/kv/fill?bytes=16&key=k"), seconds=d, host=h))
        out = subprocess.run(["redis-benchmark", "-p", str(redis_port), "-c", "32", "-n", "200000",
                              "-d", "16", "-t", "get,set", "-q"],
                             check=True, capture_output=True, text=True).stdout
        print("\n`redis-benchmark -c 32 -d 16 -t get,set` on the same Redis:\n")
        for line in out.replace("\r", "\n").splitlines():
            if "requests per second" in line:
                print(f"    {line.strip()}")
    finally:
        server.stop()
        pg.send_signal(2)
        pg.wait(timeout=30)
        redis.kill()
        redis.wait()
        shutil.rmtree(pg_folder, ignore_errors=True)
        shutil.rmtree(redis_folder, ignore_errors=True)


if __name__ == "__main__":
    main()
