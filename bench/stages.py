#!/usr/bin/env python3
"""Where a fresh-instance request's CPU time goes, stage by stage.

Usage: stages.py RENGA HELLO_WASM [SECONDS]

Starts a `renga server`, deploys HELLO_WASM, measures the server's CPU time
per request under `wrk -t1 -c32` (utime + stime from /proc/PID/stat), then
records the same load with `perf record --call-graph dwarf` and puts every
sample in one stage of the request: the kernel's part by what it was doing
(socket write, socket read, memory, waiting and waking), the rest by the
innermost frame that names a stage (instantiation, the component-model
calls between guest and host, the WASI host functions, the guest's own
code, the instance's teardown, renga's router, log line and metrics,
hyper, tokio). Each stage's share of the samples, times the CPU per request
measured without perf, is its microseconds per request. Under perf the
server runs slower, so the shares are what to read; the microseconds are an
estimate. Needs `perf` (Debian's linux-perf). Asserts nothing.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile
import time

from benchlib import Server, cpu_seconds, wrk

# Kernel samples, by what the kernel was doing (first match).
KERNEL = [
    ("kernel: socket write (loopback TCP, waking the client)",
     r"tcp_sendmsg|sock_sendmsg|do_writev|sys_writev|sock_write_iter|tcp_write_xmit|__tcp_push"),
    ("kernel: socket read", r"tcp_recvmsg|sys_recvfrom|sock_recvmsg"),
    ("kernel: memory (pagemap scan, madvise, page faults)",
     r"pagemap|madvise|page_fault|do_wp_page|zap_|do_anonymous_page|handle_mm_fault|tlb"),
    ("kernel: waiting, waking and scheduling (epoll, futex)",
     r"epoll|ep_poll|futex|schedule|nanosleep|try_to_wake_up|wake_up"),
]
# User samples, by the innermost frame that matches one of these (in this
# order for a frame that matches several).
USER = [
    ("instance teardown (pool slot reset, store drop)",
     r"reset_with_pagemap|deallocate_memor|deallocate_table|deallocate_module"
     r"|drop_in_place<wasmtime::runtime::store::Store|StoreOpaque as core::ops::drop"),
    ("WASI and wasi:http host functions the guest calls",
     r"(wasmtime_wasi_http|wasmtime_wasi|wasmtime_wasi_io)::"
     r"(?!.*(bindings::exports|ProxyPre|Proxy::|call_handle))"),
    ("instantiation", r"instantiate|Instantiator|InstancePre|allocate_module|OwnedImports|push_export"),
    ("store and request setup",
     r"web_store|DynoState|new_store|new_incoming_request|new_response_outparam|WasiCtxBuilder|Store<T>::new"),
    ("component-model calls (lifting, lowering, trampolines)",
     r"call_handle|call_async|TypedFunc|Func::call|call_raw|post_return|host_func|trampoline|HostFunc|HostFn"),
    ("response body stream", r"GuestBody|HyperOutgoingBody|poll_frame"),
    ("renga: log line", r"renga::logplex|AppLog|router::log"),
    ("renga: metrics", r"renga::metrics"),
    ("hyper: parse", r"h1::role.*parse|Server::parse|httparse|h1::decode"),
    ("hyper: encode and write", r"h1::role.*encode|encode_headers|h1::encode|poll_flush|WriteBuf"),
    ("renga: router", r"renga::router"),
    ("renga: other", r"renga::"),
    ("hyper: other", r"hyper::"),
    ("tokio: scheduling and I/O driver", r"tokio::"),
]
KERNEL = [(name, re.compile(p)) for name, p in KERNEL]
USER = [(name, re.compile(p)) for name, p in USER]



def samples(script_output: str):
    """Each sample's frames, innermost first."""
    sample = None
    for line in script_output.splitlines():
        if not line.strip():
            if sample:
                yield sample
            sample = None
        elif not line[0].isspace():
            sample = []
        elif sample is not None:
            sample.append(line.strip())
    if sample:
        yield sample


def stage(frames) -> str:
    if frames and "[kernel.kallsyms]" in frames[0]:
        kernel = [f for f in frames if "[kernel.kallsyms]" in f]
        for name, pattern in KERNEL:
            if any(pattern.search(f) for f in kernel):
                return name
        return "kernel: other (interrupts, timers, syscall entry)"
    user = [f for f in frames if "[kernel.kallsyms]" not in f]
    if not user:
        return "kernel: other (interrupts, timers, syscall entry)"
    if ".cwasm" in user[0] and "trampoline" not in user[0]:
        return "guest code"
    for frame in user:
        for name, pattern in USER:
            if pattern.search(frame):
                return name
    return "libraries (libc, mimalloc), other"


def main() -> int:
    renga, hello = sys.argv[1], sys.argv[2]
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    server = Server(renga, "--idle-after", "never")
    record = tempfile.NamedTemporaryFile(prefix="renga-stages-", suffix=".perf", delete=False).name
    try:
        server.deploy("hello", hello)
        wrk(server.url(), threads=1, connections=32, seconds=3, host="hello.localhost")
        before = cpu_seconds(server.pid)
        r = wrk(server.url(), threads=1, connections=32, seconds=seconds, host="hello.localhost")
        per_request = (cpu_seconds(server.pid) - before) / max(r[4], 1) * 1e6
        print(f"without perf: {r[0]:.0f} req/s, {per_request:.1f} µs of server CPU per request")
        perf = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "--call-graph", "dwarf,16384",
                                 "-o", record, "-p", str(server.pid)], stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = wrk(server.url(), threads=1, connections=32, seconds=seconds, host="hello.localhost")
        perf.send_signal(2)
        perf.wait()
        print(f"under perf: {r[0]:.0f} req/s")
        # --no-inline: perf's addr2line can hang on the artefact's code.
        script = subprocess.run(["perf", "script", "--no-inline", "-i", record, "-F", "comm,ip,sym,dso"],
                                capture_output=True, text=True).stdout
    finally:
        server.stop()
    counts = collections.Counter(stage(s) for s in samples(script))
    total = sum(counts.values())
    os.unlink(record)
    print(f"{total} samples")
    print(f"{'share':>6} {'µs/request':>11}  stage")
    for name, n in counts.most_common():
        print(f"{n / total * 100:5.1f}% {n / total * per_request:9.1f}    {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
