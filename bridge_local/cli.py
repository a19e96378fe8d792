"""`bridge`: run the bridge end to end on this machine, with no AWS account.

    bridge up | down | status            the local stack (Tansu broker + MiniStack on 127.0.0.1)
    bridge restart-aws                   restart the local AWS alone, keeping what it holds
    bridge produce --scenario demo       sample records from the configured producers
    bridge poll                          the local event-source mapping, until drained
    bridge invoke --event FILE [--json]  the handler once on a Lambda test event
    bridge make-event RECORDS.jsonl      plain records -> Lambda test event
    bridge events                        regenerate events/ from the config
    bridge inspect [--queue Q --peek N]  queues, depths, parked records, audit events
    bridge redrive [--reason R ...]      replay parked records from the bridge DLQ (local stack, or
                                         --queue-url URL --function NAME for a deployed stack)
    bridge replay --from DLQ             move a queue's or a subscription's DLQ back into its queue
                                         (local stack, or --aws for a deployed stack)
    bridge smoke [--stack NAME]          post-deploy check of a deployed stack (safe against production)
    bridge demo                          all of it, in a private stack stopped at the end

Errors are one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bridge.config import BridgeConfig, ConfigError, load_config_file
from bridge.parking import PARK_REASONS
from bridge.producer_signing import signed_headers
from bridge.signatures import canonical_string

from bridge_local import events as ev
from bridge_local import invoke as inv
from bridge_local import report
from bridge_local.acls import acl_commands
from bridge_local.aws import AwsSetupError, aws_session, describe_aws_error
from bridge_local.dlq_replay import DEFAULT_MAX_MESSAGES as DEFAULT_REPLAY_MAX
from bridge_local.dlq_replay import (
    ReplayError,
    ReplayReport,
    SqsReplayQueues,
    replay_dlq,
    replay_sources,
    resolve_source,
)
from bridge_local.files import write_whole
from bridge_local.poller import (
    ON_FAILURE_PREFIX,
    BatchOutcome,
    Handler,
    Poller,
    PollerSettings,
    PollStats,
    S3OnFailure,
    context_factory,
    load_real_handler,
    with_stdout_to,
)
from bridge_local.producer import (
    ScenarioError,
    UnknownProducerError,
    demo_scenario,
    expected_outcomes,
    produce,
    records_for_producer,
    sign_for_event,
)
from bridge_local.provision import (
    LocalClients,
    local_client,
    parking_bucket_name,
    provision_all,
    provision_kafka,
    signing_key,
)
from bridge_local.redrive import (
    DynamoDbRedriveLedger,
    FetchDocument,
    Invoke,
    RedriveError,
    RedriveOptions,
    RedriveReport,
    SqsParkedQueue,
    handler_transport,
    lambda_transport,
    planned_row,
    redrive,
    s3_fetcher,
)
from bridge_local.replay import S3OnFailureObjects, replay_on_failure
from bridge_local.report import counted
from bridge_local.services import (
    ACCOUNT_ID,
    AWS_PROVISIONING_MARKER,
    DEFAULT_STATE_DIR,
    REGION,
    LocalStack,
    StackError,
    StackState,
    gone_services,
    local_aws_settling,
    pid_alive,
    private_stack_gone,
    read_state,
    require_running,
    restart_aws,
    start_stack,
    state_path,
    stop_stack,
)
from bridge_local.testevents import resign_event, unsigned_at_signed_only, write_events

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3  # `bridge status` with no stack recorded: an answer, not an error (as LSB status commands)
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = "config/dev.yaml"
# Commands that act on the running stack: they take its config, and refuse another one.
STACK_COMMANDS = frozenset({"status", "produce", "poll", "invoke", "inspect", "redrive", "replay"})
POLLER_KAFKA_LOG = "poller-kafka.log"  # in the state directory, beside the services' logs


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit code 1."""


def _out(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(f"bridge: error: {text}", file=sys.stderr, flush=True)


def _warn(text: str) -> None:
    print(f"bridge: warning: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so `finally` blocks stop what was started."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _config(args: argparse.Namespace) -> BridgeConfig:
    return load_config_file(args.config)


def _key_lookup(config: BridgeConfig, clients: LocalClients) -> Any:
    return lambda producer: signing_key(config, producer, clients.secretsmanager)


# --- up / down / status -------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    config = _config(args)
    state_dir = Path(args.state_dir)
    state = start_stack(args.config, state_dir, args.kafka_port, args.aws_port)
    if args.deploy:
        try:
            state = _deploy_into(state, config, args, state_dir)
        except BaseException:
            stop_stack(state, state_dir)
            raise
        _out(f"local stack up, deployed mode (state in {state_dir / 'local.json'}); bridge poll and bridge invoke "
             "now invoke the deployed function")
        return 0
    try:
        rep = provision_all(config, state.bootstrap_servers, state.endpoint_url, args.partitions)
    except BaseException:
        stop_stack(state, state_dir)
        raise
    _out(f"local stack up (state in {state_dir / 'local.json'})")
    _out(report.table(["service", "address", "pid", "log"], [
        ["kafka (tansu)", state.bootstrap_servers, state.kafka.pid, state.kafka.log],
        ["aws (ministack)", state.endpoint_url, state.aws.pid, state.aws.log],
    ], right=(2,)))
    partitions = ", ".join(f"{t}({counted(n, 'partition')})" for t, n in rep.kafka_topics.items())
    _out(f"provisioned: {counted(len(rep.queues), 'queue')}, {counted(len(rep.topics), 'SNS topic')}, "
         f"{counted(len(rep.subscriptions), 'subscription')}, {counted(len(rep.secrets), 'signing secret')}, bucket "
         f"{rep.bucket}, Kafka topics {partitions}")
    return 0


def _deploy_into(state: StackState, config: BridgeConfig, args: argparse.Namespace, state_dir: Path,
                 write_state: bool = True) -> StackState:
    """Kafka topics, then the CDK stack into MiniStack; the state records the deployment."""
    from bridge_local.deploy import deploy, report_lines  # noqa: PLC0415 - deploy mode only

    topics = provision_kafka(config, state.bootstrap_servers, args.partitions)
    listed = ", ".join(f"{t} ({counted(n, 'partition')})" for t, n in topics.items())
    _out(f"Kafka topics: {listed}; deploying the stack (cdk synth, bootstrap, deploy; about a minute)")
    rep = deploy(config, args.config, state, state_dir)
    for line in report_lines(rep):
        _out(line)
    state = replace(state, deployment=rep.deployment())
    if write_state:
        state_path(state_dir).write_text(state.to_json(), encoding="utf-8")
    return state


def _parking_bucket(state: StackState, config: BridgeConfig) -> str:
    """The parking bucket: the deployed stack's (CloudFormation names it), else the provisioned one."""
    if state.deployment:
        return str(json.loads(state.deployment["outputs"])["ParkingBucketName"])
    return parking_bucket_name(config)


def cmd_down(args: argparse.Namespace) -> int:
    state = read_state(Path(args.state_dir))
    if state is None:
        _out("local stack is not running (nothing to stop)")
        return 0
    stopped = stop_stack(state, Path(args.state_dir))
    _out(f"stopped: {', '.join(stopped) if stopped else 'nothing was still running'}")
    return 0


def cmd_restart_aws(args: argparse.Namespace) -> int:
    """Restart MiniStack on its port with what it saved (a clean stop saves; a killed one saved nothing)."""
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    if state is None:
        raise CliError(f"the local stack is not running (no {state_path(state_dir)}). Fix: bridge up")
    if not pid_alive(state.kafka.pid):
        raise CliError(f"the broker (tansu pid {state.kafka.pid}) is gone too, and its records with it. "
                       "Fix: bridge down, then bridge up")
    provisioning = state_dir / AWS_PROVISIONING_MARKER
    unfinished = provisioning.exists()
    try:
        done = restart_aws(state_dir)
    except KeyboardInterrupt:
        _err(f"interrupted: {_aws_after_interrupt(state_dir)}")
        return EXIT_INTERRUPTED
    _out(done.describe())
    if not done.found.saved or unfinished:
        if state.deployment:
            raise CliError("the deployed stack went with it. Fix: bridge down, then bridge up --deploy")
        if unfinished:
            _out("the last restart-aws was interrupted while provisioning the emptied local AWS: provisioning again")
        config = load_config_file(state.config_path)
        # Written before provisioning and removed after: interrupted in between, the next command says so.
        provisioning.write_text(f"{time.time():.3f}\n", encoding="ascii")
        try:
            provision_all(config, state.bootstrap_servers, done.state.endpoint_url)
        except KeyboardInterrupt:
            _err("interrupted while provisioning the emptied local AWS again: some queues, topics or secrets may be "
                 "missing. Fix: bridge restart-aws (provisions them again)")
            return EXIT_INTERRUPTED
        provisioning.unlink()
        table = ", checkpoint table" if config.settings.checkpoints else ""
        _out(f"provisioned the config's queues, topics{table}, bucket and secrets again, empty: the messages they "
             "held are gone, and the signing secrets have new keys, so records signed before park as "
             "invalid_signature")
    return 0


def _aws_after_interrupt(state_dir: Path) -> str:
    """What an interrupted restart-aws left: the local AWS the state file names, and whether it answers."""
    try:
        state = require_running(state_dir)
    except StackError as exc:
        return str(exc)
    return f"the local AWS runs as pid {state.aws.pid} on {state.endpoint_url} (the state file names it)"


def _mode_line(state: StackState) -> str:
    if state.deployment:
        return (f"mode: deployed (stack {state.deployment.get('stack')} in MiniStack; the poller invokes function "
                f"{state.deployment.get('function')})")
    return "mode: in-process (the poller runs the handler in this process; bridge up --deploy runs the stack)"


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    if read_state(state_dir) is None:  # nothing started (or bridge down): say so on stdout, exit 3, no "error"
        if args.json:
            _out(json.dumps({"running": False, "state_file": str(state_path(state_dir))}, indent=2))
        else:
            _out(f"not running: no local stack is recorded in {state_dir} (bridge up starts one)")
        return EXIT_NOT_RUNNING
    state = require_running(state_dir)  # a recorded stack that is broken or starting is an error, with the fix
    up_for = time.time() - state.started_at
    if args.json:
        _out(json.dumps({"running": True, "mode": state.mode, "config": state.config_path, "up_seconds": round(up_for),
                         "deployment": state.deployment, "kafka": state.bootstrap_servers, "aws": state.endpoint_url,
                         "services": [asdict(s) for s in state.services]}, indent=2))
        return 0
    _out(report.table(["service", "address", "pid", "log"], [
        ["kafka (tansu)", state.bootstrap_servers, state.kafka.pid, state.kafka.log],
        ["aws (ministack)", state.endpoint_url, state.aws.pid, state.aws.log],
    ], right=(2,)))
    _out(f"up for {up_for:.0f} s, config {state.config_path}")
    _out(_mode_line(state))
    return 0


# --- produce / poll ----------------------------------------------------------------------------


def cmd_produce(args: argparse.Namespace) -> int:
    config = _config(args)
    state = require_running(Path(args.state_dir))
    clients = LocalClients.for_endpoint(state.endpoint_url)
    if args.file:
        records = records_for_producer(config, ev.load_plain_records(Path(args.file)), args.producer)
        if args.count:
            records = (records * (args.count // max(1, len(records)) + 1))[: args.count]
    else:
        if args.producer:
            raise CliError("--producer applies to --file records; the demo scenario names its own producers")
        records = [s.record for s in demo_scenario(config, args.count or 10)]
    rep = produce(config, state.bootstrap_servers, records, _key_lookup(config, clients))
    _print_produce(rep.records, rep.by_topic or Counter(), rep.by_producer or Counter(), rep.seconds)
    return 0


def _print_produce(n: int, by_topic: Counter[str], by_producer: Counter[str], seconds: float) -> None:
    _out(f"produced {counted(n, 'record')} in {seconds:.1f} s")
    _out(report.table(["topic", "records"], sorted(by_topic.items()), right=(1,)))
    _out(report.table(["producer", "records"], sorted(by_producer.items()), right=(1,)))


class _Progress:
    """A progress line per second at most, and one for each batch that needed retries."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.last = 0.0

    def __call__(self, outcome: BatchOutcome, stats: PollStats) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if outcome.failed_to:
            _out(f"  batch on {outcome.topic} failed {outcome.attempts}x ({outcome.error}); "
                 f"sent to {outcome.failed_to}")
        elif outcome.attempts > 1:
            _out(f"  batch on {outcome.topic} succeeded after {counted(outcome.attempts, 'attempt')}")
        if now - self.last >= 1.0:
            self.last = now
            rate = stats.records / stats.seconds if stats.seconds else 0.0
            _out(f"  {counted(stats.records, 'record'):>15} in {counted(stats.batches, 'batch')} ({rate:,.0f}/s), "
                 f"delivered {sum(stats.delivered.values())}, parked {sum(stats.parked.values())}")


@contextlib.contextmanager
def _first_ctrl_c_stops(stop: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl-C asks `stop` to finish the batch in hand; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def graceful(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("bridge: stopping after the batch in hand (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        stop()

    previous = signal.signal(signal.SIGINT, graceful)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _poll(config: BridgeConfig, config_path: str, state: StackState, args: argparse.Namespace,
          stop_after: int | None = None, private: bool = False) -> tuple[PollStats, bool]:
    """Run the local mapping; returns its totals and whether Ctrl-C stopped it. `private`: the demo's own stack
    (no state file): a service gone is reported with the demo's Fix, and if the poll then stays blocked, the
    stack is stopped before the process exits."""
    if state.deployment:
        invoke = deployed_transport(state, config)
        handler: Handler = lambda event, context: invoke(event)  # noqa: E731 - the poller's handler shape
    else:
        handler = with_stdout_to(load_real_handler(state, config, config_path, args.handler_log_level),
                                 Path(args.state_dir) / "handler-stdout.log")
    settings = PollerSettings.from_config(config, idle_seconds=args.idle_seconds, max_retries=args.max_retries,
                                          batch_size=args.batch_size)
    on_failure = S3OnFailure(local_client("s3", state.endpoint_url), _parking_bucket(state, config),
                             f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{config.name}-bridge")
    state_dir = Path(args.state_dir)
    # A service killed mid-poll stops the poll with the fix (bridge status's), instead of retrying batches
    # into it; the Kafka client's reconnect attempts go to a log file, not the terminal.
    poller = Poller(config, state.bootstrap_servers, handler, settings, on_failure,
                    progress=_Progress(args.quiet), stop_after_records=stop_after,
                    schema_base_dir=Path(config_path).resolve().parent,
                    health_check=((lambda: private_stack_gone(state, state_dir)) if private
                                  else (lambda: _poll_stack_gone(state, state_dir))),
                    kafka_log=state_dir / POLLER_KAFKA_LOG,
                    aws_settling=None if private else (lambda: local_aws_settling(state, state_dir)))
    # os._exit skips every `finally` and `with` exit: the demo's private stack must be stopped before it
    cleanup = (lambda: stop_stack(state, None)) if private else None
    with _first_ctrl_c_stops(poller.stop), _exit_when_stuck(poller, cleanup):
        stats = poller.run()
    return stats, poller.stop_event.is_set()


def _poll_stack_gone(state: StackState, state_dir: Path) -> str | None:
    """`bridge status`'s problem and Fix for the `bridge up` stack; while the broker runs, what was not
    committed is still in it, so the next poll reads the batch in hand again (a dead broker took its records)."""
    problem = gone_services(state, state_dir)
    if problem is not None and pid_alive(state.kafka.pid):
        problem += ". The batch in hand was not committed: after the fix, the next bridge poll reads it again"
    return problem


STUCK_AFTER_STACK_GONE_SECONDS = 10.0


@contextlib.contextmanager
def _exit_when_stuck(poller: Poller, cleanup: Callable[[], object] | None = None) -> Iterator[None]:
    """Once the poll found a local service gone, give it a few seconds to stop by itself, then exit: a Kafka
    client's synchronous commit or leave to a dead broker, or a handler retrying sends to a dead local AWS,
    can block for a minute or more, and what they would finish is read again by the next poll anyway."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.2):
            if poller.stack_gone.is_set():
                if not finished.wait(STUCK_AFTER_STACK_GONE_SECONDS):
                    if cleanup is not None:
                        try:
                            cleanup()
                        except Exception as exc:  # still exit, and say what may be left
                            _err(f"could not stop the services this command started: {exc}")
                    _err(poller.stopped_message())
                    os._exit(EXIT_ERROR)  # the main thread is blocked on the dead service; nothing to flush
                return

    thread = threading.Thread(target=watch, daemon=True, name="bridge-poll-stuck")
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join()


def _print_poll(stats: PollStats) -> None:
    rate = stats.records / stats.seconds if stats.seconds else 0.0
    _out(f"polled {counted(stats.records, 'record')} in {counted(stats.batches, 'batch')}, {stats.seconds:.1f} s "
         f"({rate:,.0f} records/s);"
         f" handler invocations {stats.invocations}, retries {stats.retries}, batches to on-failure "
         f"{stats.failed_batches}")
    rows = [[d, n] for d, n in sorted(stats.delivered.items())]
    rows += [[f"parked: {r}", n] for r, n in sorted(stats.parked.items())]
    if stats.skipped:
        rows.append(["skipped", stats.skipped])
    if stats.filtered_out:
        rows.append(["filtered out before the function (filter pushdown)", stats.filtered_out])
    if rows:
        _out(report.table(["outcome", "messages"], rows, right=(1,)))


def cmd_poll(args: argparse.Namespace) -> int:
    config = _config(args)
    state = require_running(Path(args.state_dir))
    _out(f"polling {', '.join(config.source.topics)} on {state.bootstrap_servers} until idle for "
         f"{args.idle_seconds} s (Ctrl-C stops after the batch in hand)")
    stats, interrupted = _poll(config, args.config, state, args)
    _print_poll(stats)
    if interrupted:
        _out("stopped by Ctrl-C: every batch handled so far is committed; the next bridge poll resumes after it")
        return EXIT_INTERRUPTED
    return 0


# --- invoke / make-event / events ---------------------------------------------------------------


MAX_PARKED_LINES = 20  # per-record lines `invoke` prints; the table has the totals


def cmd_invoke(args: argparse.Namespace) -> int:
    config = _config(args)
    event = ev.load_event_file(Path(args.event))  # the user's input first: its error is the one to fix
    state = require_running(Path(args.state_dir))
    clients = LocalClients.for_endpoint(state.endpoint_url)
    # Shipped events carry placeholder signatures (the real keys are per deployment secrets): re-sign
    # those with the local stack's keys, so each event gives the outcome events/manifest.json promises.
    # Forged signatures stay forged.
    resigned = 0 if args.as_shipped else resign_event(config, event, _key_lookup(config, clients))
    size = inv.payload_bytes(event)
    n_records = sum(len(v) for v in (event.get("records") or {}).values())
    warning = inv.oversize_warning(size)
    if warning:
        _note(warning, args.json)
    call = _invoker(state, config, args)
    dlq_url = clients.sqs.get_queue_url(QueueName=config.bridge_dlq_name)["QueueUrl"]
    if not args.json:
        _out(f"invoking {call.target} with {args.event}: {counted(n_records, 'record')}, {size / 1024:,.0f} KiB"
             + (f", {resigned} re-signed with the local keys" if resigned else "") + " (Ctrl-C stops)")
    since = datetime.now(UTC)
    baseline = inv.dlq_depth(clients, dlq_url)
    # The in-process handler redirects sys.stdout to its log while it runs: progress keeps the terminal.
    progress_stream = sys.stderr if args.json else sys.stdout

    def tick(elapsed: float) -> None:
        print(f"  {elapsed:4.0f} s: still running; {inv.dlq_depth(clients, dlq_url) - baseline:,} records parked "
              "so far", file=progress_stream, flush=True)

    try:
        outcome = inv.run_with_progress(lambda: call(event), tick)
    except KeyboardInterrupt:
        _err(f"interrupted after {(datetime.now(UTC) - since).total_seconds():.0f} s: the invocation was cut short "
             "(like a Lambda timeout); records handled until then stay delivered or parked. "
             "See: bridge inspect")
        # The handler's delivery threads would otherwise be joined at exit: stop now, as promised.
        os._exit(EXIT_INTERRUPTED)
    result, error, seconds = outcome.result, outcome.error, outcome.seconds
    record_ids = ev.record_ids(event) if error is None else set()
    parked = inv.parked_since(clients, dlq_url, record_ids, since)
    if args.json:
        _out(json.dumps({"event": args.event, "target": call.target, "resigned": resigned, "payload_bytes": size,
                         "over_invoke_limit": warning is not None, "error": error, "seconds": round(seconds, 3),
                         "result": result, "parked": parked}, indent=2, default=str))
        return EXIT_ERROR if error else 0
    if error:
        raise CliError(f"the handler raised {error}")
    summary = (result or {}).get("summary", {})
    _out(f"invoked {call.target}: {summary.get('records', '?')} records in {seconds * 1000:,.0f} ms")
    rows: list[list[Any]] = [[d, n] for d, n in (summary.get("delivered") or {}).items()]
    rows += [[f"parked: {r}", n] for r, n in (summary.get("parked") or {}).items()]
    if summary.get("skipped"):
        rows.append(["skipped", summary["skipped"]])
    _out(report.table(["where", "messages"], rows, right=(1,)) if rows else "nothing delivered or parked")
    for p in parked[:MAX_PARKED_LINES]:
        _out(f"  parked {p['record_id']}: {p['reason']} ({p.get('destination') or 'whole record'}) {p['detail']}")
    total_parked = sum(int(n) for n in (summary.get("parked") or {}).values())
    listed = min(len(parked), MAX_PARKED_LINES)
    if total_parked > listed:
        _out(f"  {total_parked - listed:,} {'more ' if listed else ''}record(s) parked by this invocation not listed "
             f"here; they are in {config.bridge_dlq_name} (bridge inspect --queue bridge-dlq)")
    failures = (result or {}).get("batchItemFailures") or []
    if failures:
        _out(f"batchItemFailures: {failures}")
    return 0


def _note(text: str, quiet_stdout: bool) -> None:
    """A progress or warning line: on stderr when stdout carries JSON."""
    print(text, file=sys.stderr if quiet_stdout else sys.stdout, flush=True)


class _InProcessCall:
    """The handler in this process, its environment pointed at the local stack."""

    target = "the handler in-process"

    def __init__(self, state: StackState, config: BridgeConfig, args: argparse.Namespace) -> None:
        self.handler = with_stdout_to(load_real_handler(state, config, args.config, args.handler_log_level),
                                      Path(args.state_dir) / "handler-stdout.log")
        self.context = context_factory(config)

    def __call__(self, event: dict[str, Any]) -> Any:
        return self.handler(event, self.context())


class _DeployedCall:
    """The function deployed in MiniStack, through Lambda's Invoke API."""

    def __init__(self, state: StackState, config: BridgeConfig) -> None:
        assert state.deployment is not None
        self.target = f"the deployed function {state.deployment['function_name']} (MiniStack)"
        self.invoke = deployed_transport(state, config)

    def __call__(self, event: dict[str, Any]) -> Any:
        return self.invoke(event)


def _invoker(state: StackState, config: BridgeConfig, args: argparse.Namespace) -> _InProcessCall | _DeployedCall:
    return _DeployedCall(state, config) if state.deployment else _InProcessCall(state, config, args)


def deployed_transport(state: StackState, config: BridgeConfig) -> Invoke:
    """Lambda Invoke of the deployed alias: no retries (a retried invoke runs the batch twice), a read
    timeout past the function's."""
    from botocore.config import Config as BotoConfig  # noqa: PLC0415

    assert state.deployment is not None
    client = local_client("lambda", state.endpoint_url, BotoConfig(
        read_timeout=config.settings.timeout_seconds + REDRIVE_VISIBILITY_MARGIN_SECONDS, connect_timeout=10,
        retries={"total_max_attempts": 1}))
    return lambda_transport(client, state.deployment["function"])


def cmd_make_event(args: argparse.Namespace) -> int:
    """Plain records -> a Lambda Kafka test event; a signing producer's records are signed (--secret-file, else
    the local stack's keys when it runs), and the command says which records the function will park unsigned."""
    config = _config(args)
    loaded = ev.load_plain_records(Path(args.records))
    # The mapping reads only source.topics: an event naming another topic is one Lambda never sends
    for n, record in enumerate(loaded, start=1):
        if record.topic not in config.source.topics:
            raise CliError(f"{args.records}: record {n}: topic {record.topic!r} is not consumed by the bridge "
                           f"{config.name!r} ({', '.join(config.source.topics)}). Fix: one of those topics, or add "
                           "it to source.topics")
    plain, signed, keyless = sign_for_event(config, loaded, _event_key_lookup(args, config))
    records = ev.to_kafka_records(plain)
    kind = "SelfManagedKafka" if args.self_managed else "aws:kafka"
    bootstrap = args.bootstrap or ("127.0.0.1:9092" if args.self_managed else "b-1.local.kafka:9098")
    event = ev.build_event(records, config.source.cluster_arn, bootstrap, kind)
    text = json.dumps(event, indent=2) + "\n"
    if args.out:
        for partial in write_whole(Path(args.out), text):  # whole or not at all: a later command reads it
            _note(f"removed {partial}: a make-event run was interrupted while writing it; {args.out} was left as "
                  "it was", quiet_stdout=False)
        _out(f"wrote {args.out}: {len(records)} records in {len(event['records'])} topic-partitions")
    else:
        sys.stdout.write(text)
    for producer, count in sorted(signed.items()):
        p = config.producer(producer)
        stale = (f"; its max_age_seconds ({p.max_age_seconds}) parks them as stale once that long has passed"
                 if p is not None and p.max_age_seconds else "")
        _note(f"signed {count} record(s) as {producer} with "
              f"{'--secret-file' if args.secret_file else 'the local stack key'}{stale}", quiet_stdout=not args.out)
    for destination, count in sorted(unsigned_at_signed_only(config, event).items()):
        accept = config.destination(destination).accept_from
        missing = f" (no key was at hand for {', '.join(sorted(keyless))})" if keyless else ""
        _warn(f"{count} record(s) go to {destination} unsigned, and it accepts only records signed by "
              f"{', '.join(accept)}: the function parks them as unsigned{missing}. Fix: give each record "
              f'"producer": {accept[0]} and sign it with --secret-file FILE (the producer\'s key, the Secrets '
              f"Manager secret {config.signing_secret_name(accept[0])}) or with the local stack up (bridge up)")
    return 0


def _event_key_lookup(args: argparse.Namespace, config: BridgeConfig) -> Callable[[str], bytes] | None:
    """make-event's signing keys: --secret-file for every producer, else the running local stack's, else none."""
    if args.secret_file:
        secret = Path(args.secret_file).read_bytes().strip()
        return lambda _producer: secret
    try:
        return _local_key_lookup(args, config)
    except (CliError, StackError):  # no local stack (or not a usable one): nothing to sign with
        return None


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign records as a producer would: prints, per record, the headers and timestamp to produce it with."""
    config = _config(args)
    if args.file:
        records = records_for_producer(config, ev.load_plain_records(Path(args.file)), args.producer)
    else:
        if not (args.producer and args.topic):
            raise CliError("bridge sign needs --file RECORDS, or --producer, --topic and optionally --key, --value, "
                           "--header NAME=VALUE")
        headers = []
        for h in args.header or ():
            name, sep, value = h.partition("=")
            if not sep or not name:
                raise CliError(f"--header {h!r}: expected NAME=VALUE")
            headers.append((name, value.encode("utf-8")))
        records = records_for_producer(config, [ev.PlainRecord(
            args.topic, None if args.key is None else args.key.encode("utf-8"),
            None if args.value is None else args.value.encode("utf-8"), tuple(headers))], args.producer)
    secret = Path(args.secret_file).read_bytes().strip() if args.secret_file else None
    key_for = (lambda _producer: secret) if secret is not None else _local_key_lookup(args, config)
    s = config.settings
    for record in records:
        producer = config.producer(record.producer) if record.producer else None
        if producer is None or not producer.signing:
            raise CliError(f"record for topic {record.topic!r}: producer {record.producer!r} is not a configured "
                           "signing producer. Fix: name one with --producer or the record's \"producer\" field")
        headers_out, timestamp = signed_headers(
            key_for(producer.name), producer=producer.name, topic=record.topic, key=record.key, value=record.value,
            headers=record.headers, timestamp_ms=args.timestamp, producer_header=s.producer_header,
            signature_header=s.signature_header, message_id_header=s.message_id_header)
        doc: dict[str, Any] = {
            "topic": record.topic, "timestamp": timestamp,
            "key": None if record.key is None else record.key.decode("utf-8", "backslashreplace"),
            "headers": [[n, None if v is None else v.decode("utf-8", "backslashreplace")] for n, v in headers_out]}
        if args.canonical:
            doc["canonical"] = canonical_string(producer=producer.name, topic=record.topic, timestamp=timestamp,
                                                key=record.key, value=record.value, headers=headers_out,
                                                signature_header=s.signature_header).decode("utf-8")
        _out(json.dumps(doc))
    return 0


def _local_key_lookup(args: argparse.Namespace, config: BridgeConfig) -> Callable[[str], bytes]:
    state = read_state(Path(args.state_dir))
    if state is None:
        raise CliError("no signing key: pass --secret-file FILE (the producer's secret), or start the local stack "
                       "(bridge up) to sign with its keys")
    clients = LocalClients.for_endpoint(require_running(Path(args.state_dir)).endpoint_url)
    return lambda producer: signing_key(config, producer, clients.secretsmanager)


def cmd_validate(args: argparse.Namespace) -> int:
    """The config checks `cdk synth` and `bridge up` start with, without synthesizing (well under a second)."""
    started = time.monotonic()
    config = _config(args)  # every problem, one per line, each naming its field and the fix
    problems: list[str] = []
    events_checked: int | None = None
    resigned = 0
    if args.events_dir:
        events_checked, resigned, stale = _stale_events(config, Path(args.events_dir))
        problems += stale
    seconds = time.monotonic() - started
    summary = {"config": args.config, "name": config.name, "environment": config.environment,
               "production": config.production, "source": config.source.kind, "topics": list(config.source.topics),
               "producers": [p.name for p in config.producers], "destinations": [d.name for d in config.destinations],
               "routes": [r.name for r in config.routes], "events_checked": events_checked,
               "events_signed_with_a_real_key": resigned, "problems": problems,
               "seconds": round(seconds, 3)}
    if args.json:
        _out(json.dumps(summary, indent=2))
        return EXIT_ERROR if problems else 0
    for problem in problems:
        _err(problem)
    if problems:
        if events_checked is not None:
            _err(f"{counted(events_checked, 'test event')} in {args.events_dir} checked: "
                 f"{counted(len(problems), 'problem')}, listed above")
        return EXIT_ERROR
    _out(f"{args.config}: valid ({seconds * 1000:.0f} ms). bridge {config.name!r}, environment {config.environment}"
         f"{' (production)' if config.production else ''}, {config.source.kind} topics "
         f"{', '.join(config.source.topics)}; {counted(len(config.producers), 'producer')}, "
         f"{counted(len(config.destinations), 'destination')}, {counted(len(config.routes), 'route')}")
    if events_checked is not None:
        _out(f"{counted(events_checked, 'test event')} in {args.events_dir} checked: "
             + ("all match the config" if events_checked else "the config generates none")
             + (f" ({resigned} of them signed with a real key instead of placeholder signatures)" if resigned else ""))
    return 0


def _stale_events(config: BridgeConfig, events_dir: Path) -> tuple[int, int, list[str]]:
    """How many test events `bridge events` generates from this config, how many of them in `events_dir` differ only
    in their signatures (signed with a real key), and those that are missing or no longer match."""
    from bridge_local.testevents import generate  # noqa: PLC0415 - only with --events-dir

    problems = []
    resigned = 0
    generated = generate(config)
    for g in generated:
        path = events_dir / f"{g.name}.json"
        try:
            on_disk = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            problems.append(f"{path}: missing or not JSON. Fix: bridge events --out-dir {events_dir}")
            continue
        if on_disk != g.event and _without_signatures(on_disk, config) == _without_signatures(g.event, config):
            resigned += 1  # signed with a real key (bridge events --secret-file): otherwise what the config generates
        elif on_disk != g.event:
            problems.append(f"{path}: stale (the config changed since it was generated), so its promised outcome "
                            f"may be wrong. Fix: bridge events --out-dir {events_dir}")
    return len(generated), resigned, problems


def _without_signatures(event: Any, config: BridgeConfig) -> Any:
    """The event with every signature header's value blanked (the rest as it is), to compare events that differ only
    in the key their records were signed with."""
    if not isinstance(event, dict):
        return event
    name = config.settings.signature_header

    def blank(record: Any) -> Any:
        if not isinstance(record, dict):
            return record
        headers = record.get("headers") or []
        return {**record, "headers": [{k: ([] if k == name else v) for k, v in h.items()} if isinstance(h, dict) else h
                                      for h in headers]}

    records = event.get("records")
    if not isinstance(records, dict):
        return event
    return {**event, "records": {tp: [blank(r) for r in items] if isinstance(items, list) else items
                                 for tp, items in records.items()}}


def cmd_events(args: argparse.Namespace) -> int:
    config = _config(args)
    key_for = None
    if args.secret_file:
        secret = Path(args.secret_file).read_bytes().strip()
        key_for = lambda _producer: secret  # noqa: E731 - make-event's rule: one key for every signing producer
    written = write_events(config, Path(args.out_dir), key_for)
    _out(f"wrote {counted(len(written.paths), 'file')} to {args.out_dir}/ (manifest.json lists what each event should "
         "do)")
    for p in written.paths:
        _out(f"  {p}")
    if written.signed:
        _out(f"signed {counted(sum(written.signed.values()), 'record')} in {', '.join(sorted(written.signed))} with "
             f"--secret-file {args.secret_file}: they verify only where that key is the producer's current or previous "
             f"key; bridge validate --events-dir {args.out_dir} reports them as stale, since the shipped events/ keep "
             "placeholders")
    elif written.placeholders:
        files = ", ".join(sorted(written.placeholders))
        _out(f"note: {counted(sum(written.placeholders.values()), 'record')} in {files} carry PLACEHOLDER "
             "signatures, valid under no real key: bridge invoke re-signs them with the local stack's keys; on a "
             "deployed stack they park as invalid_signature. To sign with a producer's real key: bridge events "
             "--secret-file KEY --out-dir DIR, or your own records with bridge make-event RECORDS.jsonl --secret-file "
             "KEY")
    return 0


def cmd_acls(args: argparse.Namespace) -> int:
    config = _config(args)
    principals = {}
    for item in args.principal or []:
        name, sep, principal = item.partition("=")
        if not sep or not principal.startswith("User:"):
            raise SystemExit(f"--principal {item!r}: expected NAME=User:<principal>, e.g. "
                             "order-service=User:orders-producer")
        principals[name] = principal
    lines = acl_commands(config, principals, args.bootstrap_server, args.command_config)
    if not lines:
        _out(f"{config.source.kind} source: topic ownership is enforced by the stack's IAM roles "
             "(kafka-cluster:WriteData per producer); no Kafka ACLs are needed")
        return 0
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# --- inspect / demo -----------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:
    config = _config(args)
    state = require_running(Path(args.state_dir))
    clients = LocalClients.for_endpoint(state.endpoint_url)
    if args.queue:
        try:
            name = report.resolve_queue(config, args.queue)
        except KeyError as exc:
            raise CliError(str(exc.args[0])) from None
        url = clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        msgs = report.peek(clients, url, args.peek)
        _out(f"{name}: showing {len(msgs)} message(s), left in the queue")
        for m in msgs:
            attrs = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
            body = m.get("Body", "")
            _out(json.dumps({"MessageId": m["MessageId"], "attributes": attrs,
                             "MessageGroupId": (m.get("Attributes") or {}).get("MessageGroupId"),
                             "body": body if len(body) <= args.max_body else body[: args.max_body] + "..."},
                            indent=2))
        return 0
    infos = report.queue_infos(config, clients)
    _out(report.table(["queue", "role", "visible", "in flight"],
                      [[q.name, q.role, q.visible, q.in_flight] for q in infos], right=(2, 3)))
    topics = clients.sns.list_topics()["Topics"]
    rows = []
    for t in topics:
        subs = clients.sns.list_subscriptions_by_topic(TopicArn=t["TopicArn"])["Subscriptions"]
        rows.append([t["TopicArn"].rsplit(":", 1)[1], ", ".join(s["Endpoint"].rsplit(":", 1)[-1] for s in subs)])
    _out("")
    _out(report.table(["SNS topic", "subscribed queues"], rows))
    bucket = _parking_bucket(state, config)
    snap = report.snapshot(config, clients, bucket=bucket)
    _out("")
    _out(report.render_parked(config, snap, bucket=bucket))
    depth = {q.name: q.visible for q in infos}
    waiting = [s for s in replay_sources(config) if depth.get(s.dlq)]
    for s in waiting:  # what the runbook says to run, once the cause is fixed
        _out(f"{s.dlq} holds {counted(depth[s.dlq], 'message')}: once the cause is fixed, "
             + (f"its consumers read it (bridge replay refuses {s.target}, which takes only signed records)"
                if s.signed_only else f"bridge replay --from {s.name} --dry-run, then without --dry-run"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    wall = time.monotonic()
    scenario = demo_scenario(config, args.count)
    expected = expected_outcomes(scenario)
    _out(f"demo: {counted(len(scenario), 'record')} from "
         f"{counted(len({s.record.producer for s in scenario if s.record.producer}), 'producer')} over "
         f"{counted(len({s.record.topic for s in scenario}), 'topic')}; "
         f"{sum(n for k, n in expected.items() if k != 'deliver')} of them must be parked")
    with LocalStack(args.config, Path(args.state_dir)) as started:
        state = started
        _out(f"[1/4] local stack: kafka {state.bootstrap_servers}, aws {state.endpoint_url}")
        if args.deploy:
            state = _deploy_into(started, config, args, Path(args.state_dir) / "demo", write_state=False)
            _out("[2/4] deployed the stack; the poller invokes the deployed function")
        else:
            provision_all(config, state.bootstrap_servers, state.endpoint_url, args.partitions)
            _out("[2/4] provisioned queues, topics, subscriptions, secrets, bucket and Kafka topics from the config")
        clients = LocalClients.for_endpoint(state.endpoint_url)
        rep = produce(config, state.bootstrap_servers, [s.record for s in scenario], _key_lookup(config, clients))
        _out(f"[3/4] produced {counted(rep.records, 'record')}: "
             + ", ".join(f"{p} {n}" for p, n in sorted((rep.by_producer or Counter()).items())))
        _out("[4/4] polling until every record is handled")
        stats, interrupted = _poll(config, args.config, state, args, stop_after=len(scenario), private=True)
        if interrupted:
            raise KeyboardInterrupt  # the demo's stack is private: stop it, as for any interruption
        _print_poll(stats)
        bucket = _parking_bucket(state, config)
        snap = report.snapshot(config, clients, bucket=bucket)
        _out("")
        _out(report.render_summary(config, snap, stats.delivered,
                                   {k: n for k, n in expected.items() if k != "deliver"}, bucket=bucket))
        lost = len(scenario) - stats.records
        _out("")
        _out(f"records produced {len(scenario)}, handled {stats.records}, not handled {max(0, lost)}; "
             f"audit events cover {snap.audit_records} records")
    _out(f"stopped the local stack; demo wall time {time.monotonic() - wall:.1f} s")
    return 0 if lost <= 0 else EXIT_ERROR


# --- redrive ------------------------------------------------------------------------------------

# Visibility margin over the function's timeout: the DLQ messages of an event stay hidden while the
# function runs, and reappear soon after when this command dies.
REDRIVE_VISIBILITY_MARGIN_SECONDS = 60
_RedrivePorts = tuple[SqsParkedQueue, FetchDocument, Invoke, str]  # the DLQ, S3 reader, transport, its name


def cmd_redrive(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.on_failure:
        return _redrive_on_failure(args, config)
    if args.max is not None and args.max < 1:
        raise CliError("--max must be at least 1")
    options = RedriveOptions(
        batch_size=args.batch_size or config.source.batch_size,
        visibility_seconds=config.settings.timeout_seconds + REDRIVE_VISIBILITY_MARGIN_SECONDS,
        reasons=tuple(args.reason or ()), destination=args.destination, max_records=args.max,
        dry_run=args.dry_run)
    if args.queue_url or args.function:
        if not (args.queue_url and args.function):
            raise CliError("AWS mode needs both --queue-url (the bridge DLQ) and --function (the bridge function); "
                           "without either, redrive uses the local stack")
        queue, fetch, invoke, where = _aws_redrive_ports(args, config)
    else:
        queue, fetch, invoke, where = _local_redrive_ports(args, config)
    try:
        rep = redrive(queue, fetch, invoke, options, _redrive_ledger(args, config))
    except RedriveError as exc:
        raise RedriveError(f"{exc}{_in_flight(queue, options)}"
                           f"{_unknown_destination(config, args.destination)}") from None
    if args.json:
        _out(json.dumps({"target": where, **rep.to_json()}, indent=2))
    else:
        _print_redrive(rep, where)
        if held := _in_flight(queue, options):
            _out(f"  note{held}")
    return EXIT_ERROR if rep.failed else 0


def _unknown_destination(config: BridgeConfig, destination: str | None) -> str:
    """`. --destination X names no destination of the config ... Fix: ...` for a misspelt name, else ''. Only said
    when nothing was selected: records parked for a destination since removed from the config stay redrivable."""
    names = [d.name for d in config.destinations]
    if destination is None or destination in names:
        return ""
    return (f". --destination {destination} names no destination of {config.name} ({', '.join(names)}). "
            "Fix: --destination with one of those names")


def _in_flight(queue: SqsParkedQueue, options: RedriveOptions) -> str:
    """` (about N DLQ messages are in flight ...)` when other receivers hold some (this run released what it
    did not delete), else ''. A redrive killed with kill -9 holds its messages until their visibility ends."""
    try:
        held = queue.in_flight()
    except Exception:  # a count that cannot be had changes nothing the run did
        return ""
    if not held:
        return ""
    return (f" (about {held} DLQ message(s) are in flight, invisible: received by a redrive still running or one "
            f"that was interrupted or killed; they reappear within {options.visibility_seconds} s of being received, "
            "and a later run takes them, deleting without a replay those an earlier run already handed over)")


# Where the event-source mapping writes failed batches in an S3 on-failure destination
# (infra.constructs.bridge_function.ESM_FAILURE_PREFIX, without the wildcard).
AWS_ON_FAILURE_PREFIX = "aws/lambda/"


def _redrive_on_failure(args: argparse.Namespace, config: BridgeConfig) -> int:
    """`bridge redrive --on-failure`: replay the mapping's S3 on-failure objects (bridge_local.replay)."""
    if args.queue_url or args.function or args.bucket:
        if not (args.bucket and args.function):
            raise CliError("AWS mode of --on-failure needs both --bucket (the parking bucket, stack output "
                           "ParkingBucketName) and --function; without them it uses the local stack")
        _, _, invoke, where = _aws_redrive_ports(argparse.Namespace(**{**vars(args), "queue_url": "unused"}),
                                                 config)
        objects = S3OnFailureObjects(aws_session(args.region).client("s3"), args.bucket,
                                     args.prefix or AWS_ON_FAILURE_PREFIX)
    else:
        _, _, invoke, where = _local_redrive_ports(args, config)
        state = require_running(Path(args.state_dir))
        objects = S3OnFailureObjects(LocalClients.for_endpoint(state.endpoint_url).s3, parking_bucket_name(config),
                                     args.prefix or f"{ON_FAILURE_PREFIX}/")
    if not config.settings.checkpoints:
        # A warning, not a refusal: these records exist nowhere else, so they are replayed (nothing lost),
        # with the duplicates said up front.
        _warn("settings.checkpoints is off: each replayed batch is delivered whole again, including what its "
              "failed attempts delivered (consumers see duplicates; record-id tells them apart). "
              "To avoid that next time: checkpoints: on (a replay then sends only what is missing)")
    rep = replay_on_failure(objects, invoke, dry_run=args.dry_run)
    if args.json:
        _out(json.dumps({"target": where, **rep.to_json()}, indent=2))
    else:
        verb = "would replay" if args.dry_run else "replayed"
        _out(f"{verb} {rep.replayed if not args.dry_run else rep.objects - len(rep.skipped)} of {rep.objects} "
             f"on-failure object(s) from {rep.where} ({rep.records} records) into {where}; delivered "
             f"{sum(rep.delivered.values())}, parked {sum(rep.parked.values())}, already done {rep.already_done}")
        for key, why in rep.skipped:
            _out(f"  skipped {key}: {why}")
        for key, error in rep.failed:
            _out(f"  failed {key} (left in place): {error}")
    return EXIT_ERROR if rep.failed else 0


def _local_redrive_ports(args: argparse.Namespace, config: BridgeConfig) -> _RedrivePorts:
    state = require_running(Path(args.state_dir))
    clients = LocalClients.for_endpoint(state.endpoint_url)
    url = clients.sqs.get_queue_url(QueueName=config.bridge_dlq_name)["QueueUrl"]
    loaded: list[Invoke] = []

    def invoke(event: dict[str, Any]) -> Any:
        # Loaded on first use: a dry run never points this process's environment at the handler.
        if not loaded:
            handler = with_stdout_to(load_real_handler(state, config, args.config, args.handler_log_level),
                                     Path(args.state_dir) / "handler-stdout.log")
            loaded.append(handler_transport(handler, context_factory(config)))
        return loaded[0](event)

    return (SqsParkedQueue(clients.sqs, url, config.bridge_dlq_name), s3_fetcher(clients.s3), invoke,
            "the handler in-process (local stack)")


def _redrive_ledger(args: argparse.Namespace, config: BridgeConfig) -> DynamoDbRedriveLedger | None:
    """The ledger of replayed DLQ messages, in the checkpoint table: only with checkpoints on (the table
    exists on AWS only then); without it, a copy a later run receives is replayed again."""
    if not config.settings.checkpoints:
        return None
    if args.queue_url:
        client = aws_session(args.region, args.queue_url).client("dynamodb")
    else:
        client = local_client("dynamodb", require_running(Path(args.state_dir)).endpoint_url)
    return DynamoDbRedriveLedger(client, config.checkpoint_table_name)


def _aws_redrive_ports(args: argparse.Namespace, config: BridgeConfig) -> _RedrivePorts:
    from botocore.config import Config as BotoConfig  # noqa: PLC0415 - AWS mode only

    session = aws_session(args.region, args.queue_url)
    # No retries and a read timeout past the function's: a retried synchronous invoke runs the batch twice.
    invoke_config = BotoConfig(read_timeout=config.settings.timeout_seconds + REDRIVE_VISIBILITY_MARGIN_SECONDS,
                               connect_timeout=10, retries={"total_max_attempts": 1})
    lambda_client: Any = session.client("lambda", config=invoke_config)
    return (SqsParkedQueue(session.client("sqs"), args.queue_url), s3_fetcher(session.client("s3")),
            lambda_transport(lambda_client, args.function), f"function {args.function}")


def _print_redrive(rep: RedriveReport, where: str) -> None:
    if rep.dry_run:
        _out(f"dry run: would redrive {rep.records} record(s) from {len(rep.planned)} park(s) of {rep.queue}"
             f"{_copies(rep)} in {rep.events} event(s) to {where}; nothing was changed")
        planned = [[r["record_id"], r["reason"], r["destination"] or "(whole record)", r["detail"][:80]]
                   for r in map(planned_row, rep.planned)]
        _out(report.table(["record id", "reason", "destination", "detail"], planned))
    else:
        _out(f"redrove {rep.redriven} of {rep.records} record(s) in {rep.events} event(s) to {where}; "
             f"deleted {rep.deleted} DLQ message(s) from {rep.queue}{_copies(rep)}")
        rows: list[list[Any]] = [[d, n] for d, n in sorted(rep.delivered.items())]
        rows += [[f"parked again: {r}", n] for r, n in sorted(rep.parked_again.items())]
        _out(report.table(["outcome", "messages"], rows, right=(1,)) if rows else "nothing delivered or parked")
    for f in rep.failed:
        _out(f"  failed: an event of {f.records} record(s) ({f.error}); its {f.messages} DLQ message(s) stay")
    for sk in rep.skipped:
        _out(f"  skipped {sk.record_id} (message {sk.message_id}): {sk.why}; left in the DLQ")
    for mm in rep.mismatched:
        _out(f"  warning: {mm.record_id} (message {mm.message_id}): {mm.why}")
    for rid in rep.conflicts:
        _out(f"  warning: {rid} is parked with different record bytes (a topic re-created under the same name, "
             "or a planted message): each version replayed on its own, none merged; check them")
    if rep.not_deleted:
        _out(f"  {rep.not_deleted} DLQ message(s) of redriven records could not be deleted; they reappear after "
             "the visibility timeout and a later redrive replays them again")
    if rep.not_selected:
        _out(f"  {rep.not_selected} DLQ message(s) not selected (filters or --max); left in the DLQ")
    if rep.replayed_before:
        verb = "would be deleted" if rep.dry_run else "deleted"
        _out(f"  {len(rep.replayed_before)} DLQ message(s) were exact copies of messages an earlier redrive already "
             f"replayed (ledger in the checkpoint {rep.ledger}): {verb}, not replayed again")
    if rep.ledger_error:
        _out(f"  warning: the redrive ledger could not be used ({rep.ledger_error}): copies of messages an earlier "
             "run replayed are replayed again, and the function's checkpoints skip what they delivered. "
             "In AWS mode your role needs dynamodb:BatchGetItem and BatchWriteItem on that table")


def _copies(rep: RedriveReport) -> str:
    if not rep.copies:
        return ""
    return (f" ({rep.copies} of the messages were copies of a park, same park-id: a DLQ send retried after its "
            "answer was lost; replayed once)")


# --- replay (every DLQ but the bridge's) --------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """`bridge replay --from DLQ`: a queue's or a subscription's DLQ back into its queue (bridge_local.dlq_replay)."""
    config = _config(args)
    try:
        source = resolve_source(config, args.source)
    except ReplayError as exc:
        raise CliError(str(exc)) from None
    if args.max is not None and args.max < 1:
        raise CliError("--max must be at least 1")
    if source.signed_only:
        raise CliError(f"{source.target} accepts only records signed by its accept_from producers, and the stack lets "
                       "no role but the bridge send to it (a role that could would write unsigned messages its "
                       f"consumers trust), so no replay writes into it. Fix: its consumers read {source.dlq} itself "
                       "(the same messages and attributes): docs/runbook.md, \"Replaying a DLQ\"")
    if args.aws:
        sqs = aws_session(args.region, what="--region").client("sqs")
        where = f"AWS ({sqs.meta.region_name})"
    else:
        sqs = LocalClients.for_endpoint(require_running(Path(args.state_dir)).endpoint_url).sqs
        where = "the local stack"
    dlq_url, target_url = (_queue_url(sqs, name) for name in (source.dlq, source.target))
    queues = SqsReplayQueues(sqs, dlq_url, target_url)
    about = queues.depth()
    if not args.json:
        _out(f"{'dry run: reading' if args.dry_run else 'replaying'} {source.dlq} ({source.what}) into "
             f"{source.target} in {where}" + (f": about {counted(about, 'message')}" if about else "")
             + ("" if args.dry_run else " (Ctrl-C stops after the request in hand)"))
    last = [time.monotonic()]

    def progress(rep: ReplayReport) -> None:
        if args.json or time.monotonic() - last[0] < 1.0:
            return
        last[0] = time.monotonic()
        _out(f"  {rep.replayed} replayed, {len(rep.skipped)} skipped, {len(rep.failed)} failed of {rep.received} "
             "received so far")

    stop = threading.Event()
    with _first_ctrl_c_stops(stop.set):
        rep = replay_dlq(queues, source, dry_run=args.dry_run, max_messages=args.max or DEFAULT_REPLAY_MAX,
                         progress=progress, stopping=stop.is_set)
    if args.json:
        _out(json.dumps({"where": where, **rep.to_json()}, indent=2))
    else:
        _print_replay(rep)
    if rep.interrupted:
        duplicates = (f"{counted(rep.sent_not_deleted, 'message')} resent and not yet deleted stay in it too, and "
                      "that run sends them again: a duplicate each"
                      + (" (unless within 5 minutes: the FIFO queue drops it by deduplication id)" if source.fifo
                         else "") if rep.sent_not_deleted else "none was resent without being deleted")
        _err(f"interrupted after {rep.replayed} of {counted(rep.received, 'message')} received: the rest stay in "
             f"{source.dlq}, visible again, for the next bridge replay; {duplicates}. Nothing was lost")
        return EXIT_INTERRUPTED
    return EXIT_ERROR if rep.failed else 0


def _queue_url(sqs: Any, name: str) -> str:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if "NonExistent" in code or "QueueDoesNotExist" in code:
            raise CliError(f"queue {name} does not exist here. Fix: check --config (the stage) and --region") from None
        raise CliError(f"sqs:GetQueueUrl of {name} was refused ({code}). Fix: run from a role in "
                       "settings.operator_role_arns (the stack grants those roles the replay: docs/runbook.md, "
                       "Operators' permissions)") from None


def _print_replay(rep: ReplayReport) -> None:
    src = rep.source
    unwrapped = f"; {counted(rep.unwrapped, 'SNS envelope')} unwrapped" if rep.unwrapped else ""
    groups = f"; {counted(len(rep.groups), 'FIFO group')}, order kept within each" if rep.groups else ""
    if rep.dry_run:
        if not rep.received:
            _out(f"{src.dlq} is empty: nothing to replay")
        else:
            _out(f"dry run: would replay {rep.replayed} of {counted(rep.received, 'message')} from {src.dlq} into "
                 f"{src.target}{unwrapped}{groups}; nothing was changed")
    elif not rep.received:
        _out(f"{src.dlq} is empty: nothing to replay")
    else:
        stopped = "stopped by Ctrl-C: " if rep.interrupted else ""
        _out(f"{stopped}replayed {rep.replayed} of {counted(rep.received, 'message')} from {src.dlq} into "
             f"{src.target}{unwrapped}{groups}; each was deleted from the DLQ only after the queue took it")
    for message_id, why in rep.skipped:
        _out(f"  skipped {message_id}: {why}; left in the DLQ")
    for message_id, error in rep.failed:
        _out(f"  failed {message_id} ({error}); left in the DLQ")
    if rep.held_back:
        _out(f"  {counted(rep.held_back, 'message')} of FIFO groups whose resend failed held back (left in the DLQ, "
             "so none overtakes the one that failed)")
    if rep.not_deleted and not rep.interrupted:
        _out(f"  {counted(rep.not_deleted, 'message')} resent but not deleted from the DLQ: a later replay sends "
             "them again (a duplicate each)")


# --- smoke --------------------------------------------------------------------------------------


def cmd_smoke(args: argparse.Namespace) -> int:
    """`bridge smoke [--stack NAME]`: the post-deploy check (bridge_local/smoke.py)."""
    from botocore.config import Config as BotoConfig  # noqa: PLC0415 - AWS mode only

    from bridge_local.smoke import (  # noqa: PLC0415
        CloudFormationOutputs,
        SmokeFailure,
        SqsProbe,
        lambda_invoke,
        run_smoke,
    )

    stack = args.stack
    if not stack:
        config = _config(args)
        stack = f"KafkaBridge-{config.name}-{config.environment}"  # infra.stack.stack_name, without the CDK
    session = aws_session(args.region)
    # one attempt: a retried synchronous invoke would run the smoke event twice (harmless, but not the check)
    invoke_client = session.client("lambda", config=BotoConfig(read_timeout=args.timeout, retries={
        "total_max_attempts": 1}))
    try:
        rep = run_smoke(stack, CloudFormationOutputs(session.client("cloudformation")), lambda_invoke(invoke_client),
                        SqsProbe(session.client("sqs")), timeout_seconds=args.timeout)
    except SmokeFailure as exc:
        raise CliError(f"smoke check of {stack} failed: {exc}") from None
    dlqs = ", ".join(f"{k} {b}->{a}" for k, (b, a) in rep.dlq_depths.items())
    _out(f"smoke check of {stack} passed: {rep.function} handled the smoke batch {rep.batch_id}, its audit event "
         f"arrived after {rep.audit_seconds:.1f} s, DLQs unchanged ({dlqs})")
    return 0


# --- argument parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bridge", description="Run the Kafka -> SQS/SNS bridge locally "
                                "(Tansu broker + MiniStack on 127.0.0.1), no AWS account needed.")
    p.add_argument("--config", default=None,
                   help=f"bridge config (default: the running stack's, else {DEFAULT_CONFIG})")
    p.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="where the running stack is recorded")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def poll_options(sp: argparse.ArgumentParser, idle: float) -> None:
        sp.add_argument("--idle-seconds", type=float, default=idle, help="stop after this long with nothing to read")
        sp.add_argument("--max-retries", type=int, default=2, help="handler retries of a batch before on-failure")
        sp.add_argument("--batch-size", type=int, default=None, help="override source.batch_size")
        sp.add_argument("--handler-log-level", default="ERROR", help="the handler's Powertools log level")
        sp.add_argument("--quiet", action="store_true", help="no progress lines")

    up = sub.add_parser("up", help="start Tansu + MiniStack and provision everything from the config")
    up.add_argument("--kafka-port", type=int, default=None, help="the broker's port (default: a free one)")
    up.add_argument("--aws-port", type=int, default=None, help="MiniStack's port (default: a free one)")
    up.add_argument("--partitions", type=int, default=3, help="partitions per Kafka topic (default 3)")
    up.add_argument("--deploy", action="store_true", help="cdk deploy the stack into MiniStack and run the deployed "
                    "function (instead of creating queues and topics from the config and the handler in-process)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local stack").set_defaults(func=cmd_down)
    sub.add_parser("restart-aws", help="restart the local AWS (MiniStack) alone; a clean stop keeps what it holds"
                   ).set_defaults(func=cmd_restart_aws)
    st = sub.add_parser("status", help="is the local stack running, where, with which config, in which mode")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)

    pr = sub.add_parser("produce", help="produce records (demo scenario or a JSONL file)")
    g = pr.add_mutually_exclusive_group()
    g.add_argument("--scenario", choices=["demo"], default="demo",
                   help="the demo's records from four producers, some of them parked on purpose (the default)")
    g.add_argument("--file", help="plain records, .jsonl or .json (format: docs/local.md, \"Records files\")")
    pr.add_argument("--producer", help="produce the file's records as this configured producer")
    pr.add_argument("--count", type=int, default=None, help="scenario: orders/payments/stock records each; "
                    "file: total records (repeats the file)")
    pr.set_defaults(func=cmd_produce)

    po = sub.add_parser("poll", help="run the local event-source mapping until drained")
    poll_options(po, 3.0)
    po.set_defaults(func=cmd_poll)

    inv = sub.add_parser("invoke", help="run the handler once on a Lambda test event")
    inv.add_argument("--event", required=True, help="a Lambda Kafka event JSON file (e.g. events/route-payments.json)")
    inv.add_argument("--json", action="store_true", help="machine-readable output")
    inv.add_argument("--as-shipped", action="store_true",
                     help="keep the placeholder signatures of shipped events (they then park as invalid_signature)")
    inv.add_argument("--resign", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    inv.add_argument("--handler-log-level", default="ERROR", help="the handler's Powertools log level (default ERROR)")
    inv.set_defaults(func=cmd_invoke)

    me = sub.add_parser("make-event", help="plain records (JSON/JSONL) -> Lambda test event")
    me.add_argument("records", help="records file (.jsonl, or .json array)")
    me.add_argument("--out", help="output file (default: stdout)")
    me.add_argument("--self-managed", action="store_true", help="SelfManagedKafka event shape")
    me.add_argument("--bootstrap", help="bootstrapServers value")
    me.add_argument("--secret-file", help="sign the records of a signing producer with this secret (the "
                    "producer's key; default: the local stack's keys when it runs, else unsigned, with a warning)")
    me.set_defaults(func=cmd_make_event)

    sg = sub.add_parser("sign", help="sign records as a producer: the headers and timestamp to produce them with")
    sg.add_argument("--file", help="plain records (.jsonl or .json, the produce --file format; docs/local.md)")
    sg.add_argument("--producer", help="the signing producer (default: each record's \"producer\")")
    sg.add_argument("--topic", help="one record: its topic")
    sg.add_argument("--key", help="one record: its key (UTF-8)")
    sg.add_argument("--value", help="one record: its value (UTF-8)")
    sg.add_argument("--header", action="append", metavar="NAME=VALUE", help="one record: a header (repeatable)")
    sg.add_argument("--timestamp", type=int, default=None, help="CreateTime in ms to sign (default: now)")
    sg.add_argument("--secret-file", help="the producer's secret (default: the local stack's key)")
    sg.add_argument("--canonical", action="store_true", help="also print the signed string (to debug a port)")
    sg.set_defaults(func=cmd_sign)

    va = sub.add_parser("validate", help="check a config (and optionally its test events) without synthesizing")
    va.add_argument("--events-dir", help="also check that the test events in DIR match the config")
    va.add_argument("--json", action="store_true", help="machine-readable output")
    va.set_defaults(func=cmd_validate)

    evs = sub.add_parser("events", help="regenerate the console test events from the config")
    evs.add_argument("--out-dir", default="events", help="where to write them (default events/)")
    evs.add_argument("--secret-file", help="sign the records meant for signed-only destinations with this key (a "
                     "producer's secret) instead of placeholder signatures; keep such files out of events/")
    evs.set_defaults(func=cmd_events)

    acl = sub.add_parser("acls", help="print the Kafka ACLs (kafka-acls commands) a self-managed cluster needs")
    acl.add_argument("--principal", action="append", metavar="NAME=User:...",
                     help="the Kafka principal a producer (or the bridge, by its config name) authenticates as; "
                          "default User:<name>")
    acl.add_argument("--bootstrap-server", default=None, help="default: source.bootstrap_servers")
    acl.add_argument("--command-config", default="admin.properties", help="kafka-acls admin client properties")
    acl.set_defaults(func=cmd_acls)

    ins = sub.add_parser("inspect", help="queues, depths, topics, parked records, audit events")
    ins.add_argument("--queue", help="a destination name, a queue name, bridge-dlq, audit or audit-dlq")
    ins.add_argument("--peek", type=int, default=5, help="messages to show, not deleted (default 5; with --queue)")
    ins.add_argument("--max-body", type=int, default=400, help="truncate bodies longer than this")
    ins.set_defaults(func=cmd_inspect)

    rd = sub.add_parser("redrive", help="replay parked records from the bridge DLQ (after fixing the cause)")
    rd.add_argument("--reason", action="append", choices=PARK_REASONS, metavar="REASON",
                    help="only records parked for this reason (repeatable)")
    rd.add_argument("--destination", help="only records parked for this destination")
    rd.add_argument("--max", type=int, default=None, help="at most this many records")
    rd.add_argument("--dry-run", action="store_true", help="show what would be redriven; change nothing")
    rd.add_argument("--json", action="store_true", help="machine-readable output")
    rd.add_argument("--batch-size", type=int, default=None, help="records per event (default source.batch_size)")
    rd.add_argument("--handler-log-level", default="ERROR", help="local mode: the handler's log level")
    rd.add_argument("--on-failure", action="store_true",
                    help="replay the event-source mapping's S3 on-failure objects (whole failed batches) instead "
                         "of the bridge DLQ; with checkpoints on, what those batches delivered is skipped")
    rd.add_argument("--prefix", default=None,
                    help=f"--on-failure: key prefix (default {ON_FAILURE_PREFIX}/ locally, "
                         f"{AWS_ON_FAILURE_PREFIX} in AWS mode)")
    aws = rd.add_argument_group("AWS mode (a deployed stack; default: the local stack)")
    aws.add_argument("--queue-url", help="the bridge DLQ's URL (stack output)")
    aws.add_argument("--function", help="the bridge function's name or ARN")
    aws.add_argument("--bucket", help="--on-failure: the parking bucket (stack output ParkingBucketName)")
    aws.add_argument("--region", default=None, help="AWS region (default: the one in --queue-url, else the AWS "
                     "configuration's)")
    rd.set_defaults(func=cmd_redrive)

    rp = sub.add_parser("replay", help="move a queue's or a subscription's DLQ messages back into the queue (after "
                        "fixing the cause); the bridge DLQ's parked records: bridge redrive")
    rp.add_argument("--from", dest="source", required=True, metavar="DLQ",
                    help="the DLQ: its name without the <name>-<environment>- prefix (e.g. fulfilment-dlq, "
                         "order-events-to-billing-dlq, audit-monitor-dlq, audit-subscription-dlq) or its full name")
    rp.add_argument("--dry-run", action="store_true", help="read and convert the messages; send and delete nothing")
    rp.add_argument("--max", type=int, default=None, help=f"at most this many messages (default {DEFAULT_REPLAY_MAX})")
    rp.add_argument("--json", action="store_true", help="machine-readable output")
    raws = rp.add_argument_group("AWS mode (a deployed stack; default: the local stack)")
    raws.add_argument("--aws", action="store_true", help="the stage of --config in AWS, with your AWS configuration's "
                      "credentials (queues found by name)")
    raws.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
    rp.set_defaults(func=cmd_replay)

    sm = sub.add_parser("smoke", help="post-deploy check of a deployed stack (safe against production)")
    sm.add_argument("--stack", help="stack name (default: KafkaBridge-<name>-<environment> of --config)")
    sm.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
    sm.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the audit event")
    sm.set_defaults(func=cmd_smoke)

    de = sub.add_parser("demo", help="private stack, produce, poll, summary, stop")
    de.add_argument("--count", type=int, default=10, help="orders/payments/stock records each (default 10)")
    de.add_argument("--partitions", type=int, default=3, help="partitions per Kafka topic (default 3)")
    de.add_argument("--deploy", action="store_true", help="cdk deploy the stack into MiniStack and run the demo "
                    "through the deployed function (make deploy-local)")
    poll_options(de, 2.0)
    de.set_defaults(func=cmd_demo)
    # `bridge validate --config X` reads as naturally as `bridge --config X validate`: take both.
    for command in sub.choices.values():
        command.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--state-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for parser in (p, *sub.choices.values()):
        _say_defaults(parser)
    return p


def _say_defaults(parser: argparse.ArgumentParser) -> None:
    """Each option with a default its help does not already give ends with "(default X)"."""
    for a in parser._actions:
        if (a.default not in (None, False, argparse.SUPPRESS) and a.help not in (None, argparse.SUPPRESS)
                and not isinstance(a, argparse._SubParsersAction) and str(a.default) not in a.help):
            a.help = f"{a.help} (default %(default)s)"


def resolve_config(args: argparse.Namespace) -> str:
    """The config a command uses: the one the running stack was started with, unless told otherwise.

    Another --config on a running stack is taken only when it describes the same bridge (same name,
    so the same queues, topics and keys, and the same source topics): an edited copy, as when a
    limit is fixed before `bridge redrive`. A config for another bridge is refused, since the
    command would poll or report topics and queues the stack was not provisioned with.
    """
    state = read_state(Path(args.state_dir)) if args.command in STACK_COMMANDS else None
    if (args.command == "redrive" and (args.queue_url or args.function)) or (args.command == "replay" and args.aws):
        state = None  # AWS mode: the local stack is not involved
    if state is None:
        return str(args.config or DEFAULT_CONFIG)
    if args.config is None or Path(args.config).resolve() == Path(state.config_path).resolve():
        return state.config_path
    given = load_config_file(args.config)
    try:
        running = load_config_file(state.config_path)
    except (ConfigError, OSError):
        return str(args.config)  # the stack's file is gone or broken: nothing to compare with
    if (given.name, given.source.topics) != (running.name, running.source.topics):
        raise CliError(f"the running local stack was started with --config {state.config_path} (bridge "
                       f"{running.name!r}, topics {', '.join(running.source.topics)}), not {args.config} (bridge "
                       f"{given.name!r}, topics {', '.join(given.source.topics)}). Fix: leave out --config (the "
                       f"stack's is used), or bridge down, then bridge up --config {args.config}")
    return str(args.config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bridge` console script."""
    args = build_parser().parse_args(argv)
    try:
        with _terminate_as_interrupt():
            args.config = resolve_config(args)
            code: int = args.func(args)
            return code
    except KeyboardInterrupt:
        _err("interrupted; everything this command started has been stopped")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (`bridge events | head`): no traceback, and none at exit when Python flushes
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except ConfigError as exc:
        _err(str(exc))  # one problem per line, each naming its field and the fix
        return EXIT_ERROR
    except (StackError, CliError, ev.EventFileError, UnknownProducerError, ScenarioError, AwsSetupError,
            ValueError, RuntimeError) as exc:
        _err(str(exc).replace("\n", " "))
        return EXIT_ERROR
    except Exception as exc:
        # the local AWS killed while the command ran, else a missing or expired AWS setting, in one line
        line = _local_aws_lost(args, exc) or describe_aws_error(exc)
        if line is None:
            raise
        _err(line)
        return EXIT_ERROR


def _local_aws_lost(args: argparse.Namespace, exc: BaseException) -> str | None:
    """What `bridge status` would say, when a call to the recorded local stack's AWS endpoint could not connect
    because MiniStack exited while the command ran (`kill -9`, a crash); else None. Without this the line was
    botocore's endpoint error with "Fix: check the region and your network", advice for AWS, not for 127.0.0.1."""
    from botocore.exceptions import EndpointConnectionError  # noqa: PLC0415 - botocore only on this error path

    if not isinstance(exc, EndpointConnectionError):
        return None
    state_dir = Path(getattr(args, "state_dir", DEFAULT_STATE_DIR))
    try:
        state = read_state(state_dir)
    except StackError:
        return None
    if state is None or not str(exc.kwargs.get("endpoint_url", "")).startswith(state.endpoint_url):
        return None
    try:
        require_running(state_dir)
    except StackError as gone:
        return f"the local AWS stopped while the command ran ({exc}): {gone}"
    return (f"the local AWS at {state.endpoint_url} did not answer ({exc}) and answers again now (a bridge "
            "restart-aws meanwhile?). Fix: run the command again")


if __name__ == "__main__":
    raise SystemExit(main())
