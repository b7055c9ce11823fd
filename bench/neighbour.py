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
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wrk(url, host, seconds):
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-H", f"Host: {host}", url],
                         capture_output=True, text=True, check=True).stdout

    def us(text):
        value = float(re.sub(r"[a-z]+$", "", text))
        return value * {"us": 1, "ms": 1000, "s": 1_000_000}[re.search(r"[a-z]+$", text).group(0)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p50, p99, int(errors.group(1)) if errors else 0


def main() -> int:
    renga, hello, misbehave, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    clients = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    work = tempfile.mkdtemp(prefix="renga-neighbour-")
    api_port, http_port = free_port(), free_port()
    token = "bench-" + os.urandom(8).hex()
    env = dict(os.environ, RENGA_DATA=os.path.join(work, "data"), RENGA_ADMIN_TOKEN=token)
    env.setdefault("RENGA_CACHE", os.path.join(work, "cache"))
    server = subprocess.Popen(
        [renga, "server", "--api", f"127.0.0.1:{api_port}", "--http", f"127.0.0.1:{http_port}",
         "--idle-after", "never", "--timeout", "10s"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = dict(env, RENGA_API_URL=f"http://127.0.0.1:{api_port}", RENGA_API_KEY=token)
    try:
        for _ in range(200):
            if subprocess.run([renga, "apps"], env=cli, capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        for app, wasm in (("quiet", hello), ("rowdy", misbehave)):
            subprocess.run([renga, "apps:create", app], env=cli, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([renga, "deploy", "--component", wasm, "-a", app], env=cli, check=True,
                           stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{http_port}/"
        alone = wrk(url, "quiet.localhost", seconds)

        stop = threading.Event()
        answered = [0]

        def rowdy(path):
            while not stop.is_set():
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
                    conn.request("GET", path, headers={"Host": "rowdy.localhost"})
                    conn.getresponse().read()
                    conn.close()
                    answered[0] += 1
                except OSError:
                    time.sleep(0.01)

        paths = ["/trap", "/oom", "/overflow"] + ["/loop"] * max(1, clients - 3)
        threads = [threading.Thread(target=rowdy, args=(p,), daemon=True) for p in paths[:clients]]
        for t in threads:
            t.start()
        time.sleep(3)
        beside = wrk(url, "quiet.localhost", seconds)
        stop.set()
        print(f"{'quiet app':<30} {'requests/s':>10} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
        for label, (rps, p50, p99, bad) in (("alone", alone), (f"beside {clients} rowdy clients", beside)):
            print(f"{label:<30} {rps:10.0f} {p50 / 1000:8.2f}ms {p99 / 1000:8.2f}ms {bad:8d}")
        print(f"rowdy requests answered (errors included) while measured: {answered[0]}")
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
