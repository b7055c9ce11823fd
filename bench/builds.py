#!/usr/bin/env python3
"""Times `git push` to first 200 for each language's example app.

Usage: bench/builds.py [RENGA [LANGUAGE...]]   (default: target/release/renga,
       every language: rust python js c)

Starts a `renga server` on a fresh data folder (ephemeral ports) with the
precompiled-code and toolchain cache in $RENGA_BENCH_CACHE (default
~/.cache/renga-bench/builds), so toolchains are installed once across runs.
For each of examples/hello-{rust,python,js,c}:
- cold: the app's first push (an empty build cache for the app), from
  launching `git push` until the router answers 200 with the app's body;
- warm, every function compiled: a second push after a one-line change,
  the app's build cache full, but the server's compiled-function cache
  (`precompiled/functions`) emptied first: what a warm push cost before
  that cache;
- warm: a third push after another one-line change, with both caches;
and the slug's size. A toolchain's first install, if it happens in this run,
is part of that language's cold figure and is reported as such.
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-builds-token"
EXAMPLES = [
    ("rust", "examples/hello-rust", "src/main.rs", "// touched\n"),
    ("python", "examples/hello-python", "app.py", "# touched\n"),
    ("js", "examples/hello-js", "index.js", "// touched\n"),
    ("c", "examples/hello-c", "hello.c", "/* touched */\n"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    renga = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/renga"))
    languages = sys.argv[2:] or [name for name, *_ in EXAMPLES]
    cache = os.environ.get("RENGA_BENCH_CACHE", os.path.expanduser("~/.cache/renga-bench/builds"))
    os.makedirs(cache, exist_ok=True)
    work = tempfile.mkdtemp(prefix="renga-bench-builds-")
    api_port, http_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = dict(os.environ, RENGA_DATA=os.path.join(work, "data"), RENGA_CACHE=cache,
               RENGA_ADMIN_TOKEN=TOKEN, RENGA_API_URL=api, RENGA_API_KEY=TOKEN,
               GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com",
               GIT_TERMINAL_PROMPT="0")
    env.pop("RENGA_APP", None)
    server = subprocess.Popen([renga, "server", "--api", f"127.0.0.1:{api_port}",
                               "--http", f"127.0.0.1:{http_port}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_api(api_port)
        print(f"{'app':<10} {'cold push to 200':>18} {'warm, all compiled':>18} "
              f"{'warm push to 200':>18} {'slug':>10}  notes")
        for name, example, touched, line in EXAMPLES:
            if name not in languages:
                continue
            app = f"bench-{name}"
            subprocess.run([renga, "apps:create", app], env=env, check=True, stdout=subprocess.DEVNULL)
            repo = os.path.join(work, name)
            shutil.copytree(os.path.join(ROOT, example), repo,
                            ignore=shutil.ignore_patterns("target", "node_modules", "*.wasm"))
            git = lambda *a: subprocess.run(["git", *a], cwd=repo, env=env, check=True,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            git("init", "-q", "-b", "main")
            git("add", "-A")
            git("commit", "-qm", "first")
            subprocess.run([renga, "git:remote", "-a", app], cwd=repo, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            cold, cold_output = push(repo, env, http_port, app)

            def touch_and_push():
                with open(os.path.join(repo, touched), "a") as f:
                    f.write(line)
                git("commit", "-qam", "touch")
                return push(repo, env, http_port, app)

            shutil.rmtree(os.path.join(cache, "precompiled", "functions"), ignore_errors=True)
            uncached, _ = touch_and_push()
            warm, warm_output = touch_and_push()
            notes = "includes the toolchain's first install" if "(once" in cold_output else ""
            print(f"{name:<10} {cold:>15.1f} s {uncached:>15.1f} s {warm:>15.1f} s "
                  f"{slug_size(api_port, app):>10}  {notes}", flush=True)
            if os.environ.get("BENCH_SHOW_OUTPUT"):
                print(warm_output, flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def wait_for_api(port: int) -> None:
    for _ in range(400):
        try:
            get(port, "/apps")
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("renga server did not start")


def get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    response = conn.getresponse()
    return json.loads(response.read() or b"null")


def push(repo: str, env: dict, http_port: int, app: str):
    started = time.perf_counter()
    done = subprocess.run(["git", "push", "-q", "renga", "main"], cwd=repo, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"push of {app} failed:\n{done.stdout}{done.stderr}")
    while time.perf_counter() - started < 1800:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
        conn.request("GET", "/", headers={"Host": f"{app}.localhost"})
        response = conn.getresponse()
        body = response.read()
        if response.status == 200 and body.endswith(b"from renga\n"):
            return time.perf_counter() - started, done.stdout + done.stderr
        time.sleep(0.01)
    raise SystemExit(f"{app} never answered 200")


def slug_size(api_port: int, app: str) -> str:
    builds = get(api_port, f"/apps/{app}/builds")
    slug = builds[-1]["slug"]["id"]
    size = get(api_port, f"/apps/{app}/slugs/{slug}")["size"]
    return f"{size / 1024 / 1024:.1f} MiB" if size >= 1 << 20 else f"{size / 1024:.0f} KiB"


if __name__ == "__main__":
    sys.exit(main())
