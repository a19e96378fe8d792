"""Lambda entry point `bridge.handler.lambda_handler`: parse, call the Bridge, log, count, return.

Cold start: Powertools objects at import (the Tracer and its X-Ray SDK only with `settings.tracing:
on`); settings and config on the first invocation, each botocore client on its first use, so a
missing variable is reported by an invocation with a clear message rather than as an import error.
Under SnapStart (`settings.snapstart: on`) the Bridge and its SQS and SNS clients are built during
init instead, so the snapshot holds them, and the random generator is reseeded after each restore
(delivery jitter must differ between environments restored from one snapshot). Logs carry the batch
id as correlation id and never a record payload.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from bridge.audit import batch_id_of_runs
from bridge.frozen import frozen
from bridge.parking import ParkingFailedError
from bridge.records import InvalidEventError, decode_event, describe_invalid_event, is_kafka_event, parse_redrive
from bridge.service import BatchReport, Bridge, OutageRetryError, cyclic_gc_paused
from bridge.settings import Settings, observability_names, snapstart_enabled, tracing_enabled

SERVICE_NAME, METRICS_NAMESPACE = observability_names()
logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)

if tracing_enabled():
    from aws_lambda_powertools import Tracer  # the X-Ray SDK only when tracing is on

    # Only botocore is patched: patching every library costs cold-start time for nothing we trace.
    _trace = Tracer(service=SERVICE_NAME, patch_modules=("botocore",)).capture_lambda_handler(capture_response=False)
else:
    def _trace(handler: Any) -> Any:
        return handler

_bridge: Bridge | None = None


def get_bridge() -> Bridge:
    """The instance's Bridge, built on first use from the environment (settings, config, clients)."""
    global _bridge  # noqa: PLW0603 - the once-per-cold-start cache Lambda handlers rely on
    if _bridge is None:
        settings = Settings.from_env()
        _bridge = Bridge(settings.load_config(), settings)
    return _bridge


def new_execution_environment() -> None:
    """Forget this instance's Bridge: the next invocation reads the environment again, as a new
    Lambda execution environment would. For in-process callers (the local poller) that point one
    process at several local stacks in turn; Lambda itself never needs it."""
    global _bridge  # noqa: PLW0603 - see get_bridge
    _bridge = None


def _prepare_snapshot() -> None:
    """SnapStart: build the Bridge inside the snapshot, with the SQS and SNS clients every invocation
    uses (the audit event is an SNS publish), and reseed `random` after each restore. Creating a client
    loads its service model and endpoint rules (about 45 ms of a cold start for the two) and opens no
    connection: urllib3 connects on the first request, after the restore."""
    global _bridge  # noqa: PLW0603 - see get_bridge
    import random  # noqa: PLC0415

    from bridge.adapters import defaults  # noqa: PLC0415 - botocore, only when the snapshot holds it

    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:  # only the Lambda runtime has it
        pass
    else:
        register_after_restore(random.seed)
    try:
        settings = Settings.from_env()
        _bridge = Bridge(settings.load_config(), settings, sqs=defaults.sqs_sender(settings, create_now=True),
                         sns=defaults.sns_sender(settings, create_now=True))
    except Exception:  # a missing variable or a bad config: the first invocation reports it in one line
        new_execution_environment()


if snapstart_enabled():
    _prepare_snapshot()


@frozen
class LocalContext:
    """Stand-in Lambda context for in-process callers (the local poller) that pass None."""

    function_name: str = "kafka-bridge-local"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:kafka-bridge-local"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        """Plenty: the local poller has no timeout."""
        return 900_000


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point. A non-Kafka event raises InvalidEventError here, undecorated: one line, one frame;
    so does a redrive event whose `bridgeRedrive` key is malformed (InvalidRedriveError)."""
    if not is_kafka_event(event):
        raise InvalidEventError(describe_invalid_event(event))
    parse_redrive(event)  # checked here for the same one-line error; decode_event parses it again
    result: dict[str, Any] = _handle(event, context if context is not None else LocalContext())
    return result


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@_trace
def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bridge = get_bridge()
    with cyclic_gc_paused():  # one pause, ended once the batch is gone (see bridge.service.cyclic_gc_paused)
        report = _process(bridge, event)
    _observe(report)
    return report.result()


def _process(bridge: Bridge, event: dict[str, Any]) -> BatchReport:
    batch = decode_event(event)
    batch_id = batch_id_of_runs(batch.runs, redrive=batch.redrive is not None)
    logger.set_correlation_id(batch_id)
    logger.append_keys(event_source_arn=batch.event_source_arn, redrive=batch.redrive is not None)
    metrics.add_metric(name="RecordsIn", unit=MetricUnit.Count, value=len(batch.items))
    try:
        return bridge.process(batch, batch_id)
    except ParkingFailedError:
        logger.exception("records could be neither delivered nor parked; the batch will be retried")
        metrics.add_metric(name="ParkingFailed", unit=MetricUnit.Count, value=1)
        raise
    except OutageRetryError:
        # Deliberate: the mapping retries the batch; checkpoints skip what this attempt delivered.
        logger.warning("outage: failing the batch back to the event-source mapping", exc_info=True)
        metrics.add_metric(name="OutageRetries", unit=MetricUnit.Count, value=1)
        raise


def _observe(report: BatchReport) -> None:
    """Log and count what happened; destinations and reasons are config-bounded dimensions."""
    summary = report.summary
    for destination, n in summary["delivered"].items():
        _count("RecordsDelivered", n, "destination", destination)
    for reason, n in summary["parked"].items():
        _count("RecordsParked", n, "reason", reason)
    if summary["skipped"]:
        metrics.add_metric(name="RecordsSkipped", unit=MetricUnit.Count, value=summary["skipped"])
    if summary["fifo_order_breaks"]:
        # a FIFO group's order broke at the destination; its rest was parked (bridge.delivery)
        metrics.add_metric(name="FifoOrderBreaks", unit=MetricUnit.Count, value=summary["fifo_order_breaks"])
    checkpoint = summary.get("checkpoint") or {}
    if checkpoint.get("skipped"):
        # (record, destination) pairs an earlier attempt had delivered or parked: not sent again
        metrics.add_metric(name="CheckpointSkipped", unit=MetricUnit.Count, value=checkpoint["skipped"])
    if checkpoint.get("errors"):
        # the checkpoint table could not be read or written: a later retry may send duplicates
        metrics.add_metric(name="CheckpointErrors", unit=MetricUnit.Count, value=checkpoint["errors"])
    for p in report.parked:
        logger.warning("record parked", extra={
            "reason": p.reason, "detail": p.detail, "record_id": p.record.record_id,
            "record_correlation_id": p.correlation_id, "destination": p.destination, "route": p.route,
            "producer": p.producer,
        })
    if report.audit_error:
        # The records are delivered or parked already; only the audit trail missed this batch.
        logger.error("audit event not published", extra={"code": report.audit_error})
        metrics.add_metric(name="AuditPublishFailed", unit=MetricUnit.Count, value=1)
    logger.info("batch done", extra={k: summary[k] for k in ("records", "delivered", "parked", "skipped")})


def _count(name: str, value: int, dimension: str, dimension_value: str) -> None:
    # One EMF document per dimension value: the batch's shared dimension set cannot vary by metric.
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=METRICS_NAMESPACE,
                       default_dimensions={"service": SERVICE_NAME}) as metric:
        metric.add_dimension(name=dimension, value=dimension_value)
