"""ARNs of MSK resources for IAM access control (cluster, topics, consumer groups).

MSK IAM authorization names topics and groups as `arn:<p>:kafka:<r>:<a>:topic/<cluster>/<uuid>/<name>`
and `.../group/<cluster>/<uuid>/<group id>`; they live in the cluster's own partition, Region and account.
"""

from __future__ import annotations

from bridge.config import Source


class MskArns:
    def __init__(self, source: Source) -> None:
        if source.kind != "msk" or source.cluster_arn is None:
            raise ValueError("MskArns needs source.kind: msk with a cluster_arn")
        self.cluster = source.cluster_arn
        parts = source.cluster_parts
        self._prefix = f"arn:{parts['partition']}:kafka:{parts['region']}:{parts['account']}"
        self._cluster_path = f"{parts['cluster']}/{parts['uuid']}"

    def topic(self, name: str) -> str:
        return f"{self._prefix}:topic/{self._cluster_path}/{name}"

    def group(self, group_id: str) -> str:
        return f"{self._prefix}:group/{self._cluster_path}/{group_id}"
