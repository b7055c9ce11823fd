#!/usr/bin/env python3
"""Times a command from launch to its first HTTP 200.

Usage: first200.py URL -- COMMAND ARGS...

Starts COMMAND, then polls URL on a fresh connection every 0.2 ms until it
answers 200, prints the elapsed milliseconds, and stops COMMAND.
"""
import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.parse


def main() -> int:
    url = sys.argv[1]
    command = sys.argv[sys.argv.index("--") + 1:]
    parsed = urllib.parse.urlparse(url)
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = started + 600
        while time.perf_counter() < deadline:
            try:
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
                conn.request("GET", parsed.path or "/")
                if conn.getresponse().status == 200:
                    print(f"{(time.perf_counter() - started) * 1000:.1f}")
                    return 0
            except (ConnectionError, OSError, http.client.HTTPException):
                pass
            if child.poll() is not None:
                print("the command exited before answering", file=sys.stderr)
                return 1
            time.sleep(0.0002)
        print("no 200 within 600 s", file=sys.stderr)
        return 1
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait()


if __name__ == "__main__":
    sys.exit(main())
