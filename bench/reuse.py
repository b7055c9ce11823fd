#!/usr/bin/env python3
"""Requests/s of the Rust, Python and JavaScript hello apps on `renga
server`, with a fresh instance per request and with instance reuse, next to
`wasmtime serve` on the same components, in one run.

Usage: reuse.py RENGA WASMTIME DURATION [LANGUAGES...]

Each example is deployed from source (`renga deploy DIR`, the real
buildpacks) to a server started here, scaled to web=2 (32 request slots),
and loaded with wrk -t2 -c32: first fresh, then after `ps:type
web=standard-1x --reuse 128` ("refused" where renga refuses reuse up front,
with its reason on stderr). `wasmtime serve` gets the very component the
slug holds (with `-S config`: renga's app world imports
`wasi:config/store`), with its default (a fresh instance per request) and
with `--max-instance-reuse-count 128`. Non-2xx answers are counted, not hidden.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from benchlib import free_port


def wrk(url: str, duration: str, host=None):
    args = ["wrk", "-t2", "-c32", f"-d{duration}", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return rps, int(bad.group(1)) if bad else 0, errors.group(0) if errors else ""


def wait_200(url: str, host=None, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            p = url.split("//", 1)[1]
            hostport = p.split("/", 1)[0]
            h, port = hostport.split(":")
            conn = http.client.HTTPConnection(h, int(port), timeout=5)
            conn.request("GET", "/", headers={"Host": host} if host else {})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"no 200 from {url}")


def main() -> int:
    renga, wasmtime, duration = sys.argv[1], sys.argv[2], sys.argv[3]
    languages = sys.argv[4:] or ["rust", "python", "js"]
    work = tempfile.mkdtemp(prefix="renga-reuse-bench-")
    api_port, http_port = free_port(), free_port()
    token = "bench-" + os.urandom(8).hex()
    data = os.path.join(work, "data")
    env = dict(os.environ, RENGA_DATA=data, RENGA_ADMIN_TOKEN=token)
    env.pop("RENGA_APP", None)
    server = subprocess.Popen(
        [renga, "server", "--api", f"127.0.0.1:{api_port}", "--http", f"127.0.0.1:{http_port}",
         "--idle-after", "never"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli_env = dict(env, RENGA_API_URL=f"http://127.0.0.1:{api_port}", RENGA_API_KEY=token)

    def cli(*args):
        subprocess.run([renga, *args], env=cli_env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def api(path):
        conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=60)
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        return json.loads(conn.getresponse().read())

    rows = []
    try:
        time.sleep(1)
        for lang in languages:
            app = f"hello-{lang}"
            cli("apps:create", app)
            cli("deploy", f"examples/{app}", "-a", app)
            cli("ps:scale", "web=2", "-a", app)
            release = api(f"/apps/{app}/releases")[-1]
            slug = api(f"/apps/{app}/slugs/{release['slug']['id']}")
            web = slug["process_types"]["web"].split()[0]
            component = os.path.join(data, "slugs", slug["checksum"].split(":")[-1], web)
            if not os.path.exists(component):
                component = next(
                    os.path.join(root, web) for root, _, files in os.walk(os.path.join(data, "slugs"))
                    if os.path.basename(web) in files)
            url = f"http://127.0.0.1:{http_port}/"
            host = f"{app}.localhost"
            wait_200(url, host)
            fresh = wrk(url, duration, host)
            asked = subprocess.run([renga, "ps:type", "web=standard-1x", "--reuse", "128", "-a", app],
                                   env=cli_env, capture_output=True, text=True)
            if asked.returncode == 0:
                wait_200(url, host)
                reused = wrk(url, duration, host)
            else:
                # Refused up front (componentize-js answers once per instance).
                reused = (0.0, 0, "refused")
                print(f"{lang}: reuse refused: {asked.stderr.strip()}", file=sys.stderr)
            figures = {"renga fresh": fresh, "renga reuse 128": reused}
            for label, extra in [("wasmtime serve fresh", []),
                                 ("wasmtime serve reuse 128", ["--max-instance-reuse-count", "128"])]:
                port = free_port()
                serve = subprocess.Popen(
                    [wasmtime, "serve", "-S", "cli", "-S", "config", *extra, "--addr", f"127.0.0.1:{port}", component],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_200(f"http://127.0.0.1:{port}/")
                    figures[label] = wrk(f"http://127.0.0.1:{port}/", duration)
                except SystemExit:
                    figures[label] = (0.0, -1, "no 200 at all")
                finally:
                    serve.terminate()
                    serve.wait()
            rows.append((lang, os.path.getsize(component), figures))
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", work])

    print(f"wrk -t2 -c32 -d{duration}; requests/s (non-2xx answers in brackets)")
    labels = ["renga fresh", "renga reuse 128", "wasmtime serve fresh", "wasmtime serve reuse 128"]
    print(f"{'app':<10} {'component':>10} " + " ".join(f"{l:>24}" for l in labels))
    for lang, size, figures in rows:
        cells = []
        for label in labels:
            rps, bad, errors = figures[label]
            cell = "refused" if errors == "refused" else f"{rps:,.0f}" + (f" [{bad}]" if bad else "")
            cells.append(f"{cell:>24}")
        print(f"{lang:<10} {size / 1024:>8.0f}KB " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
