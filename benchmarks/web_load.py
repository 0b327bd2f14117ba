"""Load check of `llmroofline serve`: concurrent POST /api/compare on loopback.

Run:  python benchmarks/web_load.py [--clients 8] [--requests 200] [--cells 24]

Starts ``llmroofline serve`` as a subprocess on a free 127.0.0.1 port, then ``--clients``
threads send ``--requests`` /api/compare requests in total (Llama-3.1-8B, A100 SXM 80GB vs
H20, a ``--cells`` x ``--cells`` mesh, the page's default request shape), each request a
new connection, and prints the latency percentiles and the request rate. Every answer must
be a 200 with a mesh of the asked size. Traffic goes only to the loopback address; the run
is bounded by the request count and by ``--timeout`` seconds, and stops the server itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.communicate()[1]}")
        try:
            with urllib.request.urlopen(base + "/api/limits", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start in time")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--cells", type=int, default=24, help="values per mesh axis (<= 64)")
    ap.add_argument("--timeout", type=float, default=300.0, help="stop after this many seconds")
    args = ap.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 10_000 and 1 <= args.cells <= 64):
        raise SystemExit("clients in [1, 64], requests in [1, 10000], cells in [1, 64]")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "llmroofline", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    body = json.dumps({"model": "llama-3.1-8b", "hardware": ["a100-sxm-80gb", "h20"],
                       "batch": f"1:1024:{args.cells}", "seq": f"128:32768:{args.cells}"}).encode()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))
    stop_at = time.monotonic() + args.timeout

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                if next(counter, None) is None:
                    return
            req = urllib.request.Request(base + "/api/compare", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    data = json.loads(r.read())
                ok = len(data["meshes"][0]["batch"]) * len(data["meshes"][0]["seq"]) > 0
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    failures.append(f"{type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t
            with lock:
                (latencies if ok else failures).append(dt if ok else "empty mesh")

    try:
        wait_ready(base, proc)
        urllib.request.urlopen(urllib.request.Request(base + "/api/compare", data=body,
                                                      method="POST", headers={"Content-Type": "application/json"}),
                               timeout=60).read()  # warm-up (catalog caches)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=args.timeout + 60)
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    lat = np.array(latencies) * 1e3
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"POST /api/compare, {args.cells} x {args.cells} mesh, 2 devices: {len(lat)} ok, "
          f"{len(failures)} failed, {args.clients} concurrent clients, {wall:.2f} s")
    if len(lat):
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        print(f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {lat.max():.1f}; "
              f"{len(lat) / wall:.1f} requests/s")
    for f in failures[:5]:
        print("failure:", f)
    return 1 if failures or not len(lat) else 0


if __name__ == "__main__":
    sys.exit(main())
