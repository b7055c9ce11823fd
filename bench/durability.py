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
import io
import random
import sys
import tarfile
import threading
import time

from benchlib import Server

LISTED_RELEASES = 1000


def slug_tarball(wasm: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(wasm, arcname="app.wasm")
    return out.getvalue()


class Writers:
    """The three writers of one round, and what the API acknowledged."""

    def __init__(self, blobs):
        self.blobs = blobs
        self.acked = {"config": 0, "formation": 0, "deploys": []}
        self.counts = {"config": 0, "formation": 0, "deploys": 0}
        self.counters = {"config": 0, "formation": 0, "deploys": 0}

    def counter(self, server, kind, path, field):
        """PATCHes an ever-growing counter until the server is gone."""
        while not self.stop.is_set():
            self.counters[kind] += 1
            n = self.counters[kind]
            try:
                status, _ = server.call("PATCH", path, {field: str(n) if kind == "config" else n})
            except OSError:
                return
            if 200 <= status < 300:
                self.acked[kind] = n
                self.counts[kind] += 1
            time.sleep(0.01)

    def deploys(self, server):
        while not self.stop.is_set():
            self.counters["deploys"] += 1
            blob = self.blobs[self.counters["deploys"] % 2]
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
                self.acked["deploys"].append((release["version"], slug["id"]))
                self.counts["deploys"] += 1

    def churn(self, server, seconds):
        self.stop = threading.Event()
        threads = [
            threading.Thread(target=self.counter,
                             args=(server, "config", "/apps/durable/config-vars", "C")),
            threading.Thread(target=self.counter,
                             args=(server, "formation", "/apps/durable/formation/web", "reuse")),
            threading.Thread(target=self.deploys, args=(server,)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        server.kill()
        self.stop.set()
        for thread in threads:
            thread.join()

    def check(self, server):
        """Acknowledged writes missing after a restart."""
        lost = []
        _, config = server.call("GET", "/apps/durable/config-vars")
        if self.acked["config"] and int((config or {}).get("C", "0")) < self.acked["config"]:
            lost.append(f"config C={(config or {}).get('C')} < acknowledged {self.acked['config']}")
        _, formation = server.call("GET", "/apps/durable/formation")
        web = next((f for f in formation or [] if f["type"] == "web"), {})
        if self.acked["formation"] and web.get("reuse", 0) < self.acked["formation"]:
            lost.append(f"reuse {web.get('reuse')} < acknowledged {self.acked['formation']}")
        _, releases = server.call("GET", "/apps/durable/releases")
        by_version = {r["version"]: (r["slug"] or {}).get("id") for r in releases or []}
        newest = max(by_version, default=0)
        for version, slug_id in self.acked["deploys"]:
            if version > newest - LISTED_RELEASES and by_version.get(version) != slug_id:
                lost.append(f"release v{version} ({slug_id}) is {by_version.get(version)}")
        self.acked["deploys"] = [d for d in self.acked["deploys"] if d[0] > newest - LISTED_RELEASES]
        return lost


def main() -> int:
    renga, hello, other, kills = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    blobs = [slug_tarball(hello), slug_tarball(other)]
    server = Server(renga, "--idle-after", "never")
    server.call("POST", "/apps", {"name": "durable"})
    _, slug = server.call("POST", "/apps/durable/slugs", {"process_types": {"web": "app.wasm"}})
    server.call("PUT", f"/apps/durable/slugs/{slug['id']}/blob", raw=blobs[0])
    server.call("POST", "/apps/durable/releases", {"slug": slug["id"]})
    server.kill()

    writers = Writers(blobs)
    lost = []
    unserved = 0
    started = time.monotonic()
    for round_ in range(kills):
        server.start()
        writers.churn(server, random.uniform(0.2, 2.0))
        server.start()
        lost += [f"round {round_}: {line}" for line in writers.check(server)]
        if server.get("durable")[0] != 200:
            unserved += 1
        server.kill()
        if (round_ + 1) % 10 == 0:
            print(f"  {round_ + 1} kills, {len(lost)} lost so far ({time.monotonic() - started:.0f}s)",
                  flush=True)

    counts = writers.counts
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
