#!/usr/bin/env python3
"""How many updates per second one Python asyncio watcher receives.

A writer process pours value changes into one session (non-atomic
SetVariables calls of --chunk sets each, so every set is its own revision
and its own update, pre-serialized so the writer costs little), staying at
most --window updates ahead of the watcher so the watcher is never cut off
as a slow consumer. One AsyncClient watch counts what arrives.

    /usr/bin/python3 clients/python/bench_watch.py               # builds and starts a server
    /usr/bin/python3 clients/python/bench_watch.py --server 127.0.0.1:50051

Modes (default: all): ``client`` (varwatch.AsyncClient.watch, Update
objects with native values, on the client's shared Watch stream),
``client-value`` (the same with view="value"), ``client-dedicated`` (on a
WatchVariables stream of its own), ``client-batched`` (on
WatchVariablesBatched), ``raw`` and ``raw-batched`` (the generated stub
alone, no conversion: the ceiling for this interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import grpc  # noqa: E402

import varwatch  # noqa: E402
from varwatch._proto.varwatch.v1 import bridge_pb2 as pb  # noqa: E402
from varwatch._proto.varwatch.v1 import bridge_pb2_grpc as pb_grpc  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
MODES = ("client", "client-value", "client-dedicated", "client-batched", "raw", "raw-batched")


def writer(target: str, session_id: str, names: list[str], chunk: int, window: int, total: int,
           received: Any, written: Any, stop: Any) -> None:
    """Sends SetVariables calls until total sets are written, never more
    than window ahead of what the watcher has received."""
    ch = grpc.insecure_channel(target)
    stub = pb_grpc.UnifiedBridgeStub(ch)
    req = pb.SetVariablesRequest(session_id=session_id, atomic=False)
    for i in range(chunk):
        req.updates.add(session_id=session_id, variable_identifier=names[i % len(names)],
                        value=pb.Value(integer_value=i))
    call = stub.SetVariables.future
    n = 0
    pending: list[Any] = []
    while n < total and not stop.is_set():
        if n - received.value > window:
            time.sleep(0.0005)
            continue
        pending.append(call(req))
        n += chunk
        written.value = n
        if len(pending) >= 4:
            pending.pop(0).result()
    for f in pending:
        f.result()
    ch.close()


async def watch_client(target: str, session_id: str, total: int, batched: bool, delay: float,
                       received: Any, mode: str = "client") -> float:
    async with varwatch.AsyncClient(target) as c:
        w = await c.session(session_id).watch(batched=batched, max_batch_delay=delay if batched else None,
                                              dedicated=mode == "client-dedicated",
                                              view="value" if mode == "client-value" else "full",
                                              max_retries=0).start()
        n = 0
        t0 = 0.0
        async for _ in w:
            n += 1
            if n == 1:
                t0 = time.perf_counter()
            if n & 255 == 0:
                received.value = n
            if n >= total:
                break
        dt = time.perf_counter() - t0
        await w.aclose()
        return (n - 1) / dt


async def watch_raw(target: str, session_id: str, total: int, batched: bool, delay: float,
                    received: Any, mode: str = "raw") -> float:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pb_grpc.UnifiedBridgeStub(ch)
        req = pb.WatchVariablesRequest(session_id=session_id)
        if batched and delay:
            req.max_batch_delay.FromNanoseconds(int(delay * 1e9))
        call = (stub.WatchVariablesBatched if batched else stub.WatchVariables)(req)
        await call.initial_metadata()
        n = 0
        t0 = 0.0
        async for msg in call:
            if batched:
                k = sum(1 for u in msg.updates if u.update_type != "heartbeat")
            else:
                k = 0 if msg.update_type == "heartbeat" else 1
            if n == 0 and k:
                t0 = time.perf_counter()
                n, k = 1, k - 1
            n += k
            received.value = n
            if n >= total:
                break
        dt = time.perf_counter() - t0
        call.cancel()
        return (n - 1) / dt


def run_mode(target: str, mode: str, total: int, chunk: int, window: int, variables: int, delay: float) -> float:
    with varwatch.Client(target) as c, c.create_session() as s:
        names = [f"v{i}" for i in range(variables)]
        for name in names:
            s.register(name, "integer", 0)
        ctx = mp.get_context("spawn")
        received, written, stop = ctx.Value("q", 0), ctx.Value("q", 0), ctx.Event()
        batched = mode.endswith("batched")
        watch = watch_raw if mode.startswith("raw") else watch_client

        async def main() -> float:
            task = asyncio.create_task(watch(target, s.id, total, batched, delay, received, mode))
            await asyncio.sleep(0.2)  # let the watch register before writes start
            p = ctx.Process(target=writer, args=(target, s.id, names, chunk, window, total, received, written, stop))
            p.start()
            try:
                return await task
            finally:
                stop.set()
                await asyncio.to_thread(p.join, 30)

        return asyncio.run(main())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(binary: Optional[str]) -> tuple[subprocess.Popen[bytes], str, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="varwatch-bench-")
    if binary is None:
        binary = os.environ.get("VARWATCH_BIN")
    if binary is None:
        binary = os.path.join(tmp.name, "varwatch")
        go = shutil.which("go") or sys.exit("go not found: pass --server or --binary")
        subprocess.run([go, "build", "-o", binary, "./cmd/varwatch"], cwd=REPO, check=True)
    target = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([binary, "serve", "--listen", target, "--log-level", "warn"])
    with varwatch.Client(target, timeout=1) as c:
        deadline = time.monotonic() + 30
        while True:
            try:
                c.ping()
                break
            except varwatch.VarwatchError:
                if time.monotonic() > deadline:
                    proc.kill()
                    sys.exit("server did not start")
                time.sleep(0.05)
    return proc, target, tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="address of a running varwatch serve (default: start one)")
    ap.add_argument("--binary", help="varwatch binary to start (default: $VARWATCH_BIN or go build)")
    ap.add_argument("--updates", type=int, default=200_000, help="updates per mode (default 200000)")
    ap.add_argument("--chunk", type=int, default=1000, help="sets per SetVariables call (default 1000)")
    ap.add_argument("--window", type=int, default=20_000,
                    help="how far the writer may run ahead of the watcher (default 20000)")
    ap.add_argument("--variables", type=int, default=100, help="variables written round-robin (default 100)")
    ap.add_argument("--max-batch-delay", type=float, default=0.0,
                    help="seconds the server may wait to fill a batch, for the batched modes (default 0)")
    ap.add_argument("--mode", choices=MODES, action="append", help="repeatable; default: all")
    args = ap.parse_args()

    proc = tmp = None
    target = args.server
    if target is None:
        proc, target, tmp = start_server(args.binary)
    try:
        print(f"python {sys.version.split()[0]}, grpcio {grpc.__version__}, {os.cpu_count()} CPUs, "
              f"{args.updates} updates per mode, writer chunk {args.chunk}, max_batch_delay {args.max_batch_delay}s")
        for mode in args.mode or MODES:
            rate = run_mode(target, mode, args.updates, args.chunk, args.window, args.variables,
                            args.max_batch_delay)
            print(f"{mode:15s} {rate:12,.0f} updates/s")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
