#!/usr/bin/env python3
"""A cluster of three renga hosts next to one host, in one run, on one
machine (so the figures are about overhead, not capacity).

Usage: cluster.py RENGA HELLO_WASM [KILLS] [SECONDS]

Starts three `nats-server`s (a JetStream cluster, each with its own store
folder), then measures:
  1. deploy to first 200: `renga deploy` of HELLO_WASM on one host without a
     cluster, then through host a of the cluster (first 200 through a, and
     through every host);
  2. requests/s (wrk, 2 threads, 32 connections, SECONDS each, default 10):
     the single host; the cluster through the host that runs web.1 (served
     there); through a host that runs none (forwarded); and through all three
     at once (three wrk runs side by side, summed);
  3. the cost of a forwarded request: p50 and p99 at one connection, served
     where it arrives against forwarded;
  4. failover, KILLS times (default 20): under requests through the two
     other hosts, `kill -9` of the host that runs web.1; the time until
     every request is answered 200 again, and the time until another host
     runs web.1 (its heartbeat lists it). The killed host is started again
     on its folder before the next kill.
Prints every figure; asserts nothing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchlib import Server, free_port, wrk


class Nats:
    """Three nats-servers in one JetStream cluster."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="renga-bench-nats-")
        ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
        routes = ", ".join(f'"nats://127.0.0.1:{r}"' for _, r, _ in ports)
        self.processes = []
        self.urls = ",".join(f"nats://127.0.0.1:{p}" for p, _, _ in ports)
        for i, (port, route, monitor) in enumerate(ports):
            store = os.path.join(self.dir, f"n{i}")
            os.makedirs(store)
            config = os.path.join(self.dir, f"n{i}.conf")
            with open(config, "w") as f:
                f.write(f'server_name: n{i}\nlisten: "127.0.0.1:{port}"\n'
                        f'http: "127.0.0.1:{monitor}"\n'
                        f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 1GB }}\n'
                        f'cluster {{ name: renga-bench, listen: "127.0.0.1:{route}", routes: [{routes}] }}\n')
            self.processes.append(subprocess.Popen(
                ["nats-server", "-c", config], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        for _, _, monitor in ports:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the NATS cluster did not become healthy")
                time.sleep(0.1)

    def stop(self):
        for p in self.processes:
            p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def first_200(server, app, deadline_s=60):
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            if server.get(app, timeout=5)[0] == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"{app} never answered 200")


def deploy_timed(through, everyone, app, wasm):
    """Seconds from the deploy's start to the first 200 through `through`,
    and through every host."""
    through.cli("apps:create", app)
    started = time.monotonic()
    through.cli("deploy", "--component", wasm, "-a", app)
    own = first_200(through, app) - started
    every = max(first_200(s, app) for s in everyone) - started
    return own, every


def hosts(server):
    status, listed = server.call("GET", "/hosts")
    return listed if status == 200 else []


def running(server, dyno):
    return [h["name"] for h in hosts(server) if h["state"] != "lost" and dyno in h["dynos"]]


def wait_running(server, dyno, not_on=(), bound=60):
    started = time.monotonic()
    while time.monotonic() - started < bound:
        on = running(server, dyno)
        if len(on) == 1 and on[0] not in not_on:
            return on[0], time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"{dyno} was not placed within {bound}s")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    renga, hello = sys.argv[1], sys.argv[2]
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    nats = Nats()
    token = "bench-" + os.urandom(8).hex()
    single = Server(renga, "--idle-after", "never")
    cache = single.cache
    names = ["a", "b", "c"]
    cluster = {}
    try:
        for name in names:
            cluster[name] = Server(renga, "--idle-after", "never", "--cluster", nats.urls,
                                   "--host-name", name, token=token, cache=cache)
        print("1. deploy to first 200")
        # Every server shares one cache: compile the component once first,
        # so that both rows measure a deploy of a component already known.
        single.deploy("warm-up", hello)
        own, _ = deploy_timed(single, [single], "hello", hello)
        print(f"   one host:             {own * 1000:7.0f} ms")
        own, every = deploy_timed(cluster["a"], list(cluster.values()), "hello", hello)
        print(f"   cluster, through a:   {own * 1000:7.0f} ms (every host: {every * 1000:.0f} ms)")

        placed, _ = wait_running(cluster["a"], "hello web.1")
        other = next(n for n in names if n != placed)
        print(f"\n2. requests/s (web.1 runs on {placed}; {other} forwards)")
        rows = [("one host", single), (f"cluster, served where it arrives ({placed})", cluster[placed]),
                (f"cluster, forwarded ({other} -> {placed})", cluster[other])]
        c1 = {}
        for label, server in rows:
            r = wrk(server.url(), 2, 32, seconds, host="hello.localhost")
            one = wrk(server.url(), 1, 1, seconds, host="hello.localhost")
            c1[label] = one
            print(f"   {label:42} {r[0]:8.0f} req/s  p50 {r[1]:6.0f}us  p99 {r[2]:6.0f}us  non-2xx {r[3]}")
        results = [None] * 3
        def run(i, server):
            results[i] = wrk(server.url(), 1, 16, seconds, host="hello.localhost")
        threads = [threading.Thread(target=run, args=(i, cluster[n])) for i, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"   {'cluster, through all three at once':42} {sum(r[0] for r in results):8.0f} req/s"
              f"  ({', '.join(f'{n} {r[0]:.0f}' for n, r in zip(names, results))})")

        print("\n3. a forwarded request's cost (one connection)")
        for label, one in c1.items():
            print(f"   {label:42} p50 {one[1]:6.0f}us  p99 {one[2]:6.0f}us  {one[0]:7.0f} req/s")

        print(f"\n4. failover after kill -9 of the host running web.1, {kills} times")
        outages, moves, lost = [], [], 0
        for k in range(kills):
            placed, _ = wait_running(cluster["a"] if "a" in cluster else next(iter(cluster.values())),
                                     "hello web.1")
            others = [cluster[n] for n in names if n != placed]
            answers = []
            stop = threading.Event()
            def load():
                turn = 0
                while not stop.is_set():
                    server = others[turn % len(others)]
                    turn += 1
                    try:
                        status = server.get("hello", timeout=10)[0]
                    except OSError:
                        status = 0
                    answers.append((time.monotonic(), status))
            thread = threading.Thread(target=load)
            thread.start()
            time.sleep(0.5)
            killed = cluster[placed]
            kill_at = time.monotonic()
            killed.kill()
            _, moved_at = wait_running(others[0], "hello web.1", not_on=(placed,))
            time.sleep(0.5)
            stop.set()
            thread.join()
            after = [(t, s) for t, s in answers if t > kill_at]
            failed = [(t, s) for t, s in after if s != 200]
            outage = (failed[-1][0] - kill_at) if failed else 0.0
            outages.append(outage * 1000)
            moves.append((moved_at - kill_at) * 1000)
            lost += len(failed)
            print(f"   kill {k + 1:2}: {placed} killed; requests failed: {len(failed):3} "
                  f"(last {outage * 1000:7.1f} ms after); web.1 placed elsewhere after "
                  f"{(moved_at - kill_at) * 1000:6.0f} ms", flush=True)
            killed.start()
            deadline = time.monotonic() + 30
            while placed not in [h["name"] for h in hosts(killed) if h["state"] == "up"]:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{placed} did not come back")
                time.sleep(0.1)
        print(f"   requests answered again: p50 {pct(outages, 50):.1f} ms, p99 {pct(outages, 99):.1f} ms"
              f" ({lost} requests failed in all)")
        print(f"   web.1 placed on another host: p50 {pct(moves, 50):.0f} ms, p99 {pct(moves, 99):.0f} ms")
    finally:
        for server in list(cluster.values()) + [single]:
            server.stop()
        nats.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
