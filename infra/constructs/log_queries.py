"""Saved CloudWatch Logs Insights queries over the function's log group, the ones docs/runbook.md uses.

The handler logs JSON through Powertools (bridge.handler): `record parked` with reason, destination,
route, producer, record id and the record's correlation id (never the payload); `batch done` with
the counts; `audit event not published`; errors with `exception`. Lambda's JSON log format adds the
`platform.report` line per invocation with its duration and status.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_logs as logs
from bridge.config import BridgeConfig
from bridge.parking import TRUST_PARK_REASONS
from constructs import Construct

QUERY_NAME_MAX = 255  # botocore logs QueryDefinitionName
QUERY_STRING_MAX = 10_000  # botocore logs QueryDefinitionString

_TRUST = ", ".join(f'"{r}"' for r in TRUST_PARK_REASONS)


@dataclass(frozen=True)
class SavedQuery:
    id: str
    purpose: str
    query: str


QUERIES = (
    SavedQuery("parked-by-reason", "how many records were parked, for which reason and destination",
               'filter message = "record parked"\n'
               "| stats count(*) as parked by reason, destination, route\n"
               "| sort parked desc"),
    SavedQuery("parked-records", "the parked records themselves: ids, correlation ids, detail (newest first)",
               "fields @timestamp, reason, destination, route, producer, record_id, record_correlation_id, detail\n"
               '| filter message = "record parked"\n'
               "| sort @timestamp desc\n"
               "| limit 200"),
    SavedQuery("untrusted-records", "records that failed the trust checks, by producer claim and reason",
               "fields @timestamp, reason, producer, destination, record_id, detail\n"
               f'| filter message = "record parked" and reason in [{_TRUST}]\n'
               "| stats count(*) as records, earliest(@timestamp) as first, latest(@timestamp) as last "
               "by reason, producer, destination\n"
               "| sort records desc"),
    SavedQuery("errors", "failed invocations and what raised (batch id as correlation_id)",
               "fields @timestamp, message, exception_name, exception, correlation_id, event_source_arn\n"
               '| filter level = "ERROR"\n'
               "| sort @timestamp desc\n"
               "| limit 100"),
    SavedQuery("slow-invocations", "the slowest invocations and timeouts (Lambda's platform report)",
               "fields @timestamp, record.requestId as request_id, record.status as status,\n"
               "       record.metrics.durationMs as duration_ms, record.metrics.maxMemoryUsedMB as memory_mb\n"
               '| filter type = "platform.report"\n'
               "| sort duration_ms desc\n"
               "| limit 50"),
    SavedQuery("throughput", "records in, skipped and batches per 5 minutes",
               'filter message = "batch done"\n'
               "| stats sum(records) as records_in, sum(skipped) as skipped, count(*) as batches by bin(5m)"),
    SavedQuery("direct-sends", "whether the send clients write their batches directly or through botocore, and why",
               'filter message in ["direct sends on", "direct sends off"]\n'
               "| stats count(*) as clients, latest(@timestamp) as last by message, client, reason, endpoint_host\n"
               "| sort last desc"),
    SavedQuery("audit-not-published", "batches whose audit event could not be published, with the error code",
               "fields @timestamp, code, correlation_id\n"
               '| filter message = "audit event not published"\n'
               "| sort @timestamp desc"),
)


def query_name(config: BridgeConfig, query_id: str) -> str:
    """Saved-query names use `/` as a folder, so the console groups one bridge's queries."""
    return f"{config.prefix}/{query_id}"


class SavedLogQueries(Construct):
    """One AWS::Logs::QueryDefinition per entry of QUERIES, scoped to the function's log group."""

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig,
                 log_group: logs.ILogGroup) -> None:
        super().__init__(scope, construct_id)
        self.names: dict[str, str] = {}
        for q in QUERIES:
            name = query_name(config, q.id)
            if len(name) > QUERY_NAME_MAX or len(q.query) > QUERY_STRING_MAX:
                raise ValueError(f"saved query {name!r}: name or query over the CloudWatch Logs limits")
            logs.CfnQueryDefinition(self, q.id, name=name, query_string=q.query,
                                    log_group_names=[log_group.log_group_name])
            self.names[q.id] = name
