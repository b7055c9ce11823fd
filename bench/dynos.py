#!/usr/bin/env python3
"""Scale to zero and density on one `renga server`.

Usage: dynos.py RENGA HELLO_WASM APPS WAKES [LONE [SERVER_FLAG...]]

Starts its own `renga server` (idle period 2s for every app, then
SERVER_FLAGs such as `--keep-code-for 0s`), then:
- deploys APPS copies of HELLO_WASM as separate apps with `renga deploy
  --component`, timing the whole run;
- waits until every app is unloaded and reads the server's RSS;
- wakes WAKES of them one after another, one request each, timing each
  request from sending to the last byte of the answer (the wake is inside
  it); then requests the same apps again while they are warm, for a warm
  latency in the same run. Apps that run the same component share its
  compiled code while any of them is awake, so after the first these wakes
  find it loaded;
- once every app is idle again, wakes LONE of them (default 20) one at a
  time, each while every other app is idle: the wake of an app alone. Its
  compiled code is still mapped (the server keeps it 10 minutes after the
  last dyno by default); with `--keep-code-for 0s` each wake maps and links
  it again;
- keeps 100 apps loaded (idle period `never`, one request each) and reads
  the RSS again.
Prints the figures; asserts only that every request got its 200.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import free_port


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    renga, hello, apps, wakes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lone = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    flags = sys.argv[6:]
    work = tempfile.mkdtemp(prefix="renga-dynos-bench-")
    api_port, http_port = free_port(), free_port()
    token = "bench-" + os.urandom(8).hex()
    env = dict(os.environ, RENGA_DATA=os.path.join(work, "data"), RENGA_ADMIN_TOKEN=token)
    env.setdefault("RENGA_CACHE", os.path.join(work, "cache"))
    env.pop("RENGA_APP", None)
    server = subprocess.Popen(
        [renga, "server", "--api", f"127.0.0.1:{api_port}", "--http", f"127.0.0.1:{http_port}",
         "--idle-after", "2s", *flags],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli_env = dict(env, RENGA_API_URL=f"http://127.0.0.1:{api_port}", RENGA_API_KEY=token)

    def api(method: str, path: str, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def get(app: str) -> float:
        """One request to an app; milliseconds to the whole answer."""
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
        started = time.perf_counter()
        conn.request("GET", "/", headers={"Host": f"{app}.localhost"})
        response = conn.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        conn.close()
        if response.status != 200 or b"from renga" not in body:
            raise SystemExit(f"{app} answered {response.status}: {body[:200]!r}")
        return took

    try:
        for _ in range(600):
            try:
                if api("GET", "/apps")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        baseline = rss_mib(server.pid)

        names = [f"app-{i:04d}" for i in range(apps)]
        started = time.perf_counter()
        for name in names:
            subprocess.run([renga, "apps:create", name], env=cli_env, check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run([renga, "deploy", "--component", hello, "-a", name], env=cli_env,
                           check=True, stdout=subprocess.DEVNULL)
        deploy_s = time.perf_counter() - started

        def idle(names) -> bool:
            for name in names:
                _, dynos = api("GET", f"/apps/{name}/dynos")
                if any(d["state"] != "idle" for d in dynos):
                    return False
            return True

        def wait_idle(names):
            deadline = time.time() + 120
            while not idle(names):
                if time.time() > deadline:
                    raise SystemExit("the apps never went idle")
                time.sleep(0.1)

        wait_idle(names[:: max(1, apps // 50)])
        time.sleep(1)
        idle_rss = rss_mib(server.pid)

        woken = names[:wakes]
        wake_ms = [get(name) for name in woken]
        warm_ms = [get(name) for name in woken]

        # Each wake alone: every app idle first (the woken ones included).
        wait_idle(woken)
        lone_ms = []
        for i, name in enumerate(names[:lone]):
            if i:
                wait_idle([names[i - 1]])
            time.sleep(0.2)
            lone_ms.append(get(name))

        # 100 apps kept loaded.
        for name in names[:100]:
            api("PATCH", f"/apps/{name}", {"idle_after": 0})
            get(name)
        time.sleep(1)
        warm_rss = rss_mib(server.pid)

        print(f"apps deployed: {apps} in {deploy_s:.1f} s ({deploy_s / apps * 1000:.0f} ms each, CLI start included)")
        print(f"server RSS: {baseline:.0f} MiB with no app, {idle_rss:.0f} MiB with {apps} apps idle, "
              f"{warm_rss:.0f} MiB with 100 of them loaded")
        print(f"wake from zero to the whole answer, {len(wake_ms)} wakes: p50 {pct(wake_ms, 50):.2f} ms, "
              f"p99 {pct(wake_ms, 99):.2f} ms, mean {statistics.mean(wake_ms):.2f} ms; "
              f"the first (nothing loaded) {wake_ms[0]:.2f} ms, the slowest is number "
              f"{wake_ms.index(max(wake_ms)) + 1}")
        print(f"warm request, same apps, same run: p50 {pct(warm_ms, 50):.2f} ms, "
              f"p99 {pct(warm_ms, 99):.2f} ms, mean {statistics.mean(warm_ms):.2f} ms")
        if lone_ms:
            print(f"wake of an app alone (every other app idle{', ' + ' '.join(flags) if flags else ''}), "
                  f"{len(lone_ms)} wakes: "
                  f"p50 {pct(lone_ms, 50):.2f} ms, p99 {pct(lone_ms, 99):.2f} ms, "
                  f"max {max(lone_ms):.2f} ms")
            print("  each: " + " ".join(f"{ms:.1f}" for ms in lone_ms))
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", work])
    return 0


if __name__ == "__main__":
    sys.exit(main())
