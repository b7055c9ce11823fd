#!/usr/bin/env python3
"""Log drains under load: what a drain costs the app, and the rate at which
it starts to lose lines (L10).

Usage: drains.py RENGA HELLO_WASM [SECONDS]

Starts a `renga server` (drains to loopback allowed), deploys HELLO_WASM
and loads it with wrk (2 threads, 32 connections, SECONDS each, default
10); every request is one router line. In one run:

- no drain (the reference);
- one HTTP drain to a receiver that answers at once, and one syslog drain
  to a TCP receiver that only counts frames;
- one HTTP drain to receivers that take 20 ms and 100 ms to answer each
  batch, so the drain's capacity (one batch of at most 500 lines in flight)
  falls below the load and lines are lost.

For each: the app's requests/s, the lines the receiver got per second, and
the lines reported lost (the L10 reports the receiver got in its stream).
Receivers are separate Python processes on this machine; they take CPU
from the server, as wrk does. Asserts nothing.
"""
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

from benchlib import Server, free_port, wrk

L10 = re.compile(rb"Error L10 \(output buffer overflow\): (\d+) messages dropped")


def receiver_main(kind, port, delay_ms, out):
    """A drain receiver: counts frames and reported losses into `out`."""
    frames = 0
    dropped = 0
    delay = int(delay_ms) / 1000

    def save():
        with open(out + ".tmp", "w") as f:
            f.write(f"{frames} {dropped}\n")
        os.replace(out + ".tmp", out)

    async def http(reader, writer):
        nonlocal frames, dropped
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            count = int(re.search(rb"(?i)logplex-msg-count: *(\d+)", head).group(1))
            body = await reader.readexactly(length)
            if delay:
                await asyncio.sleep(delay)
            frames += count
            dropped += sum(int(n) for n in L10.findall(body))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()

    async def syslog(reader, writer):
        nonlocal frames, dropped
        buffer = b""
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                return
            buffer += chunk
            while True:
                space = buffer.find(b" ")
                if space < 0:
                    break
                end = space + 1 + int(buffer[:space])
                if end > len(buffer):
                    break
                frame = buffer[space + 1:end]
                frames += 1
                m = L10.search(frame)
                if m:
                    dropped += int(m.group(1))
                buffer = buffer[end:]

    async def main():
        async def guarded(reader, writer):
            try:
                await (http if kind == "http" else syslog)(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await asyncio.start_server(guarded, "127.0.0.1", int(port))
        async with server:
            while True:
                save()
                await asyncio.sleep(0.2)

    asyncio.run(main())


class Receiver:
    def __init__(self, kind, delay_ms=0):
        self.port = free_port()
        self.out = tempfile.mktemp(prefix="renga-drain-")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--receiver", kind, str(self.port), str(delay_ms), self.out])
        while not os.path.exists(self.out):
            time.sleep(0.05)

    def counts(self):
        with open(self.out) as f:
            frames, dropped = f.read().split()
        return int(frames), int(dropped)

    def stop(self):
        self.process.terminate()
        self.process.wait()
        os.unlink(self.out)


def main() -> int:
    renga, wasm = sys.argv[1], sys.argv[2]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    server = Server(renga, "--allow-private-drains", "--idle-after", "never")
    try:
        server.deploy("bench", wasm)
        url = server.url("/")
        rows = []
        cases = [("no drain", None, 0), ("HTTP drain, answers at once", "http", 0),
                 ("syslog drain (TCP)", "syslog", 0),
                 ("HTTP drain, 20 ms per batch", "http", 20),
                 ("HTTP drain, 100 ms per batch", "http", 100)]
        for label, kind, delay in cases:
            receiver = drain = None
            if kind:
                receiver = Receiver(kind, delay)
                drain = (f"http://127.0.0.1:{receiver.port}/" if kind == "http"
                         else f"syslog://127.0.0.1:{receiver.port}")
                server.cli("drains:add", drain, "-a", "bench")
            if not rows:
                wrk(url, threads=2, connections=32, seconds=2, host="bench.localhost")  # warm
            before = receiver.counts() if receiver else (0, 0)
            r = wrk(url, threads=2, connections=32, seconds=seconds, host="bench.localhost")
            if receiver:
                time.sleep(12)  # what was queued or in flight arrives
                after = receiver.counts()
                frames, dropped = after[0] - before[0], after[1] - before[1]
                server.cli("drains:remove", drain, "-a", "bench")
                receiver.stop()
            else:
                frames, dropped = 0, 0
            rows.append((label, r[0], frames / seconds, dropped, r[4]))
            print(f"{label:32} {r[0]:8.0f} req/s  {frames / seconds:8.0f} lines/s delivered  "
                  f"{dropped:7d} lost (L10) of {r[4]} requests", flush=True)
        print()
        print("| drain | app req/s | lines delivered/s | lines lost (L10) | requests |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, rps, lines, dropped, total in rows:
            print(f"| {label} | {rps:.0f} | {lines:.0f} | {dropped} | {total} |")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        receiver_main(*sys.argv[2:6])
    else:
        sys.exit(main())
