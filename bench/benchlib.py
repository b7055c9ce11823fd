"""What renga's benchmark scripts share: free ports, a `renga server`
started on its own data folder, its API and CLI, wrk's figures, and RSS.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wrk(url, threads=2, connections=32, seconds=10, host=None, script=None, headers=()):
    """Runs wrk; returns (requests/s, p50 µs, p99 µs, non-2xx, total requests)."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if host:
        args += ["-H", f"Host: {host}"]
    for header in headers:
        args += ["-H", header]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout

    def us(text):
        unit = re.search(r"[a-z]+$", text).group(0)
        return float(text[: -len(unit)]) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return (float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            us(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            us(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            int(bad.group(1)) if bad else 0,
            int(total.group(1)) if total else 0)


class Server:
    """A `renga server` on ephemeral ports, with its own data folder (kept
    across `restart()`s) and the admin token `token`."""

    def __init__(self, renga, *flags, data=None, cache=None, token=None):
        self.renga = renga
        self.flags = list(flags)
        work = tempfile.mkdtemp(prefix="renga-bench-")
        self.data = data or os.path.join(work, "data")
        self.cache = cache or os.environ.get("RENGA_CACHE") or os.path.join(work, "cache")
        self.token = token or "bench-" + os.urandom(8).hex()
        self.process = None
        self.start()

    def start(self):
        self.api_port, self.http_port = free_port(), free_port()
        self.env = dict(os.environ, RENGA_DATA=self.data, RENGA_CACHE=self.cache,
                        RENGA_ADMIN_TOKEN=self.token)
        self.env.pop("RENGA_APP", None)
        self.cli_env = dict(self.env, RENGA_API_URL=f"http://127.0.0.1:{self.api_port}",
                            RENGA_API_KEY=self.token)
        self.process = subprocess.Popen(
            [self.renga, "server", "--api", f"127.0.0.1:{self.api_port}", "--http",
             f"127.0.0.1:{self.http_port}", *self.flags],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.call("GET", "/apps")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("renga server did not start")
            time.sleep(0.02)

    @property
    def pid(self):
        return self.process.pid

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def call(self, method, path, body=None, raw=None, timeout=60):
        """One API request: (status, parsed JSON or None)."""
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
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, None

    def cli(self, *args, check=True):
        return subprocess.run([self.renga, *args], env=self.cli_env, check=check,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def deploy(self, app, wasm):
        self.cli("apps:create", app)
        self.cli("deploy", "--component", wasm, "-a", app)

    def get(self, app, path="/", timeout=30):
        """One request to an app: (status, body, milliseconds to the last byte)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        started = time.perf_counter()
        conn.request("GET", path, headers={"Host": f"{app}.localhost"})
        response = conn.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        conn.close()
        return response.status, body, took

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
