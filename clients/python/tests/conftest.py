"""Fixtures: a real ``varwatch serve`` process (built once per test run),
clients and sessions on it, and a TCP proxy that can cut connections.

Set VARWATCH_BIN to a built binary to skip the ``go build``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any, Iterator, Optional

import pytest

import varwatch

REPO = pathlib.Path(__file__).resolve().parents[3]
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def go_binary(tmp_path_factory: pytest.TempPathFactory, env: str, package: str, name: str) -> str:
    """$env if set, else package built from this checkout's module (so
    its version is the one go.mod requires) into a temporary directory."""
    given = os.environ.get(env)
    if given:
        return given
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"go is not on PATH: cannot build {name} (or set {env})")
    out = tmp_path_factory.mktemp("bin") / name
    proc = subprocess.run([go, "build", "-o", str(out), package], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"go build {package} failed:\n{proc.stderr}")
    return str(out)


def end_process(proc: Optional[subprocess.Popen], log: Any) -> None:
    """Asks proc, if any, to stop (SIGTERM) and kills it if it has not
    exited within 15 s; then closes and removes its log file."""
    if proc is not None:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    log.close()
    try:
        os.unlink(log.name)
    except OSError:
        pass


@pytest.fixture(scope="session")
def varwatch_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The server binary: $VARWATCH_BIN, or built from this checkout."""
    return go_binary(tmp_path_factory, "VARWATCH_BIN", "./cmd/varwatch", "varwatch")


class Server:
    """One ``varwatch serve`` process on a free loopback port."""

    def __init__(self, binary: str, *args: str, client_kwargs: Optional[dict] = None) -> None:
        self.binary = binary
        self.args = args
        # What a client needs to get an answer (TLS, token), for the
        # readiness ping.
        self.client_kwargs = dict(client_kwargs or {})
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="varwatch-serve-", suffix=".log", delete=False)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", self.target, *self.args],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        last: Optional[Exception] = None
        with varwatch.Client(self.target, timeout=1.0, **self.client_kwargs) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"varwatch serve exited with {self.proc.returncode}:\n{self.logs()}")
                # Ping only once the port is open: a refused connection
                # puts the channel in backoff (seconds, by the time a
                # cluster node has reached JetStream and listens).
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError as e:
                    last = e
                    time.sleep(0.02)
                    continue
                try:
                    c.ping("ready")
                    return self
                except varwatch.VarwatchError as e:
                    last = e
                    time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"varwatch serve not answering on {self.target} after {START_TIMEOUT}s: {last}\n{self.logs()}")

    def logs(self) -> str:
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM: the server ends watch streams with UNAVAILABLE."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        end_process(self.proc, self.log)
        self.proc = None


@pytest.fixture(scope="session")
def server(varwatch_bin: str) -> Iterator[Server]:
    """The shared server (heartbeats every 200ms, so watches see them)."""
    s = Server(varwatch_bin, "--heartbeat-interval", "200ms").start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def small_buffer_server(varwatch_bin: str) -> Iterator[Server]:
    """A server that cuts off a watch stream 16 updates behind."""
    s = Server(varwatch_bin, "--subscription-buffer", "16").start()
    yield s
    s.stop()


@pytest.fixture
def start_server(varwatch_bin: str) -> Iterator:
    """Starts a private server (for tests that shut it down)."""
    started: list[Server] = []

    def start(*args: str, client_kwargs: Optional[dict] = None) -> Server:
        s = Server(varwatch_bin, *args, client_kwargs=client_kwargs).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[varwatch.Client]:
    with varwatch.Client(server.target, timeout=10.0) as c:
        yield c


@pytest.fixture
def session(client: varwatch.Client) -> Iterator[varwatch.Session]:
    with client.create_session() as s:
        yield s


class Proxy:
    """A TCP proxy to a server whose connections can be cut at will (a
    dropped network, as the client sees it) while it keeps accepting."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._mu = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                down.close()
                continue
            with self._mu:
                if self._closed:
                    down.close()
                    up.close()
                    return
                self._socks += [down, up]
                self.accepted += 1
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Resets every open connection (new ones are still accepted)."""
        with self._mu:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        with self._mu:
            self._closed = True
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    p = Proxy(server.target)
    yield p
    p.close()


@pytest.fixture(scope="session")
def black_hole() -> Iterator[str]:
    """The address of a listener that accepts connections and never
    answers, so a call can only end at its deadline."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


@pytest.fixture(scope="session")
def nats_server_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A nats-server binary for cluster tests: $NATS_SERVER_BIN, or built
    from the module varwatch's go.mod already requires (so its version is
    the one the Go tests embed, and nothing else is fetched)."""
    return go_binary(tmp_path_factory, "NATS_SERVER_BIN", "github.com/nats-io/nats-server/v2", "nats-server")


class NatsServer:
    """One JetStream server on a free loopback port, its store in a
    temporary directory: what ``serve --cluster`` nodes share."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="varwatch-nats-")
        self.log = tempfile.NamedTemporaryFile(prefix="varwatch-nats-", suffix=".log", delete=False)
        self.proc: Optional[subprocess.Popen[bytes]] = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.dir],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n"
                                   + pathlib.Path(self.log.name).read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nats-server not listening on {self.url} after {START_TIMEOUT}s")
                time.sleep(0.05)

    def stop(self) -> None:
        end_process(self.proc, self.log)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """Two ``varwatch serve --cluster`` nodes over one JetStream server."""

    def __init__(self, nats: NatsServer, nodes: list[Server]) -> None:
        self.nats = nats
        self.nodes = nodes


@pytest.fixture
def cluster(varwatch_bin: str, nats_server_bin: str) -> Iterator[Cluster]:
    """A private cluster (tests stop its NATS server)."""
    nats = NatsServer(nats_server_bin)
    nodes: list[Server] = []
    try:
        for _ in range(2):
            nodes.append(Server(varwatch_bin, "--cluster", nats.url, "--cluster-connect-timeout", "20s",
                                "--heartbeat-interval", "200ms").start())
        yield Cluster(nats, nodes)
    finally:
        for s in nodes:
            s.stop()
        nats.stop()
