#!/usr/bin/env python3
"""Times renga's control plane against a running `renga server`.

Usage: control_plane.py RENGA API_URL HTTP_PORT TOKEN HELLO_WASM OTHER_WASM ITERATIONS

With an app `bench` created fresh:
- deploy to first 200: `renga deploy`, alternating two components with
  different bodies, from launching the CLI until the router serves the new
  body;
- config:set to the new value served: `renga config:set GREETING=...` until
  the body carries the new greeting; and the same through the API directly
  (one PATCH), without the CLI's process start.
Prints p50, p99 and mean of each, in milliseconds.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse


def main() -> int:
    renga, api, http_port, token, hello, other, iterations = sys.argv[1:8]
    http_port, iterations = int(http_port), int(iterations)
    env = dict(os.environ, RENGA_API_URL=api, RENGA_API_KEY=token)
    env.pop("RENGA_APP", None)

    def cli(*args: str) -> None:
        subprocess.run([renga, *args], env=env, check=True, stdout=subprocess.DEVNULL)

    def body() -> str:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/", headers={"Host": "bench.localhost"})
        response = conn.getresponse()
        text = response.read().decode()
        return text if response.status == 200 else ""

    def until(expected: str, started: float) -> float:
        deadline = started + 120
        while time.perf_counter() < deadline:
            if body() == expected:
                return (time.perf_counter() - started) * 1000
            time.sleep(0.0005)
        raise SystemExit(f"never served {expected!r}")

    parsed = urllib.parse.urlparse(api)

    def patch_config(value: str) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        conn.request(
            "PATCH",
            "/apps/bench/config-vars",
            body=json.dumps({"GREETING": value}),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    cli("apps:create", "bench")
    deploys = []
    for i in range(iterations):
        component, expected = (hello, "hello from renga\n") if i % 2 == 0 else (other, "ok\n")
        started = time.perf_counter()
        cli("deploy", "--component", component, "-a", "bench")
        deploys.append(until(expected, started))
    cli("deploy", "--component", hello, "-a", "bench")

    config_cli, config_api = [], []
    for i in range(iterations):
        started = time.perf_counter()
        cli("config:set", f"GREETING=cli{i}", "-a", "bench")
        config_cli.append(until(f"cli{i} from renga\n", started))
        started = time.perf_counter()
        patch_config(f"api{i}")
        config_api.append(until(f"api{i} from renga\n", started))

    def report(label: str, values: list) -> None:
        values = sorted(values)
        p50 = values[len(values) // 2]
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"{label:<44} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  mean {statistics.mean(values):7.1f} ms  (n={len(values)})")

    report("deploy (CLI) to first 200 on the new release", deploys)
    report("config:set (CLI) to the new value served", config_cli)
    report("config-vars PATCH (API) to the new value served", config_api)
    return 0


if __name__ == "__main__":
    sys.exit(main())
