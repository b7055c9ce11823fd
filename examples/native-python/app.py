"""native-python: a WSGI app run by gunicorn as a native process.

renga's native Python buildpack installs requirements.txt into a virtualenv
in the slug; the Procfile's `web: gunicorn ...` runs in a sandbox, bound to
$PORT, behind renga's router. Config vars are its environment.

Besides the greeting, it has routes that show what a native dyno can and
cannot reach, and that misbehave on purpose (the platform's tests use them):
  /env                  the environment's names
  /read?path=P          reads a file or lists a folder
  /connect?port=N       opens a TCP connection to 127.0.0.1:N
  /processes            the processes the dyno can see
  /crash                ends the dyno's processes (gunicorn's and its own)
  /hog?mb=N             holds N MiB more on every call
"""

import json
import os
import signal
import socket
from urllib.parse import parse_qs

HELD = []


def answer(start_response, status, body, kind="text/plain; charset=utf-8"):
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(data)))])
    return [data]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/":
        greeting = os.environ.get("GREETING", "hello")
        return answer(start_response, "200 OK", f"{greeting} from renga (native)\n")
    if path == "/env":
        return answer(start_response, "200 OK", json.dumps(sorted(os.environ)), "application/json")
    if path == "/read":
        target = query.get("path", "")
        try:
            if os.path.isdir(target):
                found = "\n".join(sorted(os.listdir(target)))
            else:
                with open(target, "rb") as f:
                    found = f.read(200).decode("utf-8", "replace")
            return answer(start_response, "200 OK", "read: " + found)
        except OSError as e:
            return answer(start_response, "200 OK", f"refused: {e}")
    if path == "/connect":
        port = int(query.get("port", "0"))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return answer(start_response, "200 OK", "connected")
        except OSError as e:
            return answer(start_response, "200 OK", f"refused: {e}")
    if path == "/processes":
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        return answer(start_response, "200 OK", json.dumps(pids), "application/json")
    if path == "/whoami":
        return answer(start_response, "200 OK", f"uid={os.getuid()} cwd={os.getcwd()} home={os.environ.get('HOME')}")
    if path == "/crash":
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(3)
    if path == "/hog":
        block = bytearray(int(query.get("mb", "64")) << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        HELD.append(block)
        return answer(start_response, "200 OK", f"holding {len(HELD)} blocks\n")
    return answer(start_response, "404 Not Found", "not found\n")
