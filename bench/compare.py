#!/usr/bin/env python3
"""Two renga builds side by side on the request path, in one run.

Usage: compare.py RENGA_A RENGA_B HELLO_WASM [ROUNDS] [SECONDS]

Starts a `renga server` from each binary (same flags, own data folder),
deploys HELLO_WASM to each, then alternates wrk runs between them, ROUNDS
times (default 3) for SECONDS each (default 10): 2 threads and 32
connections, then 1 connection. Prints every run and the medians, so that a
change to the router or the per-request path is measured before and after
on the same machine at the same time. Asserts nothing.
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wrk(threads, connections, seconds, port):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-H", "Host: hello.localhost", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout

    def us(text):
        unit = re.search(r"[a-z]+$", text).group(0)
        return float(text[: -len(unit)]) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    return (float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)))


def main() -> int:
    binaries = sys.argv[1:3]
    hello = sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    seconds = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    servers = []
    try:
        for renga in binaries:
            work = tempfile.mkdtemp(prefix="renga-compare-")
            api, http = free_port(), free_port()
            token = "cmp-" + os.urandom(6).hex()
            env = dict(os.environ, RENGA_DATA=os.path.join(work, "data"), RENGA_ADMIN_TOKEN=token,
                       RENGA_CACHE=os.path.join(work, "cache"))
            process = subprocess.Popen([renga, "server", "--api", f"127.0.0.1:{api}", "--http",
                                        f"127.0.0.1:{http}", "--idle-after", "never"],
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cli = dict(env, RENGA_API_URL=f"http://127.0.0.1:{api}", RENGA_API_KEY=token)
            for _ in range(200):
                if subprocess.run([renga, "apps"], env=cli, capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            subprocess.run([renga, "apps:create", "hello"], env=cli, check=True, stdout=subprocess.DEVNULL)
            subprocess.run([renga, "deploy", "--component", hello, "-a", "hello"], env=cli, check=True,
                           stdout=subprocess.DEVNULL)
            servers.append((renga, process, http))
        results = {(i, mode): [] for i in range(2) for mode in ("c32", "c1")}
        for round_ in range(rounds):
            for i, (renga, _, port) in enumerate(servers):
                for mode, (t, c) in (("c32", (2, 32)), ("c1", (1, 1))):
                    r = wrk(t, c, seconds, port)
                    results[(i, mode)].append(r)
                    print(f"round {round_ + 1} {'AB'[i]} {mode}: {r[0]:9.0f} req/s  p50 {r[1]:7.0f}us  "
                          f"p99 {r[2]:7.0f}us", flush=True)
        print()
        for i, (renga, _, _) in enumerate(servers):
            print(f"{'AB'[i]}: {renga}")
        print(f"{'':4}{'c32 req/s':>11}{'c32 p50':>10}{'c32 p99':>10}{'c1 p50':>9}{'c1 p99':>9}")
        for i in range(2):
            c32, c1 = results[(i, "c32")], results[(i, "c1")]
            med = lambda rows, k: statistics.median(r[k] for r in rows)
            print(f"{'AB'[i]:4}{med(c32, 0):11.0f}{med(c32, 1):8.0f}us{med(c32, 2):8.0f}us"
                  f"{med(c1, 1):7.0f}us{med(c1, 2):7.0f}us")
    finally:
        for _, process, _ in servers:
            process.terminate()
            process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
