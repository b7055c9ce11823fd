#!/usr/bin/env python3
"""Acknowledged writes survive kill -9: churn, kill the server at a random
moment, restart it, and look for every write it acknowledged.

Usage: durability.py RENGA HELLO_WASM OTHER_WASM KILLS

One data folder, one app (`durable`). Each round starts `renga server` on
it, runs three writers against the API at once, and SIGKILLs the server
after a random 0.2 to 2 s:
- config: PATCH config-vars with C set to a counter that only grows;
- deploys: a new slug (HELLO_WASM and OTHER_WASM in turn) uploaded and
  released;
- formation: PATCH formation/web with `reuse` set to a counter that only
  grows.
A writer records a write only once the API answered 2xx. After the kill the
server is started again and every acknowledged write is looked for: C and
`reuse` at least the last acknowledged value, and every acknowledged
release (within the listed window) with its slug. It also checks that the
app serves. Prints kills, writes acknowledged and writes lost; asserts
nothing.
"""
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

LISTED_RELEASES = 1000


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def slug_tarball(wasm: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(wasm, arcname="app.wasm")
    return out.getvalue()


class Server:
    def __init__(self, renga, data, cache, token):
        self.renga, self.data, self.cache, self.token = renga, data, cache, token
        self.api_port, self.http_port = free_port(), free_port()
        env = dict(os.environ, RENGA_DATA=data, RENGA_CACHE=cache, RENGA_ADMIN_TOKEN=token)
        self.process = subprocess.Popen(
            [renga, "server", "--api", f"127.0.0.1:{self.api_port}", "--http",
             f"127.0.0.1:{self.http_port}", "--idle-after", "never"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.call("GET", "/apps")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def call(self, method, path, body=None, raw=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            raw = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=raw, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return response.status, parsed

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def main() -> int:
    renga, hello, other, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    work = tempfile.mkdtemp(prefix="renga-durability-")
    data, cache = os.path.join(work, "data"), os.environ.get("RENGA_CACHE", os.path.join(work, "cache"))
    token = "durable-" + os.urandom(8).hex()
    blobs = [slug_tarball(hello), slug_tarball(other)]
    server = Server(renga, data, cache, token)
    server.call("POST", "/apps", {"name": "durable"})
    status, slug = server.call("POST", "/apps/durable/slugs", {"process_types": {"web": "app.wasm"}})
    server.call("PUT", f"/apps/durable/slugs/{slug['id']}/blob", raw=blobs[0])
    server.call("POST", "/apps/durable/releases", {"slug": slug["id"]})
    server.kill()

    acked = {"config": 0, "deploys": [], "formation": 0}
    counts = {"config": 0, "deploys": 0, "formation": 0}
    counters = {"config": 0, "formation": 0, "deploy": 0}
    lost = []
    unserved = 0
    started = time.monotonic()
    for round_ in range(kills):
        server = Server(renga, data, cache, token)
        stop = threading.Event()

        def config_writer():
            while not stop.is_set():
                counters["config"] += 1
                n = counters["config"]
                try:
                    status, _ = server.call("PATCH", "/apps/durable/config-vars", {"C": str(n)})
                except OSError:
                    return
                if 200 <= status < 300:
                    acked["config"] = n
                    counts["config"] += 1
                time.sleep(0.01)

        def formation_writer():
            while not stop.is_set():
                counters["formation"] += 1
                n = counters["formation"]
                try:
                    status, _ = server.call("PATCH", "/apps/durable/formation/web", {"reuse": n})
                except OSError:
                    return
                if 200 <= status < 300:
                    acked["formation"] = n
                    counts["formation"] += 1
                time.sleep(0.01)

        def deploy_writer():
            while not stop.is_set():
                counters["deploy"] += 1
                blob = blobs[counters["deploy"] % 2]
                try:
                    status, slug = server.call("POST", "/apps/durable/slugs",
                                               {"process_types": {"web": "app.wasm"}})
                    if status != 201:
                        continue
                    status, _ = server.call("PUT", f"/apps/durable/slugs/{slug['id']}/blob", raw=blob)
                    if status != 200:
                        continue
                    status, release = server.call("POST", "/apps/durable/releases", {"slug": slug["id"]})
                except OSError:
                    return
                if status == 201:
                    acked["deploys"].append((release["version"], slug["id"]))
                    counts["deploys"] += 1

        writers = [threading.Thread(target=f) for f in (config_writer, formation_writer, deploy_writer)]
        for w in writers:
            w.start()
        time.sleep(random.uniform(0.2, 2.0))
        server.kill()
        stop.set()
        for w in writers:
            w.join()

        server = Server(renga, data, cache, token)
        _, config = server.call("GET", "/apps/durable/config-vars")
        if acked["config"] and int((config or {}).get("C", "0")) < acked["config"]:
            lost.append(f"round {round_}: config C={config.get('C')} < acknowledged {acked['config']}")
        _, formation = server.call("GET", "/apps/durable/formation")
        web = next((f for f in formation or [] if f["type"] == "web"), {})
        if acked["formation"] and web.get("reuse", 0) < acked["formation"]:
            lost.append(f"round {round_}: reuse {web.get('reuse')} < acknowledged {acked['formation']}")
        _, releases = server.call("GET", "/apps/durable/releases")
        by_version = {r["version"]: (r["slug"] or {}).get("id") for r in releases or []}
        newest = max(by_version) if by_version else 0
        for version, slug_id in acked["deploys"]:
            if version > newest - LISTED_RELEASES and by_version.get(version) != slug_id:
                lost.append(f"round {round_}: release v{version} ({slug_id}) is {by_version.get(version)}")
        acked["deploys"] = [d for d in acked["deploys"] if d[0] > newest - LISTED_RELEASES]
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        conn.request("GET", "/", headers={"Host": "durable.localhost"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            unserved += 1
        server.kill()
        if (round_ + 1) % 10 == 0:
            print(f"  {round_ + 1} kills, {len(lost)} lost so far ({time.monotonic() - started:.0f}s)",
                  flush=True)

    print(f"kills: {kills}")
    print(f"writes acknowledged: {counts['config']} config changes, {counts['deploys']} deploys, "
          f"{counts['formation']} formation changes ({sum(counts.values())} in all)")
    print(f"writes lost: {len(lost)}")
    for line in lost[:20]:
        print(f"  {line}")
    print(f"restarts after which the app did not serve: {unserved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
