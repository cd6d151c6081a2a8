"""Who owns which partition, as every worker of the group can tell.

The range assignor gives each worker the same partition numbers of every
co-partitioned input topic. This one also carries each worker's advertised
web URL in its group metadata, and the group leader hands the whole map
(partition → URL, and every worker's URL) to every member with its assignment.
That is what the HTTP API needs to send a customer's request to the worker
owning the customer's partition, and a leaderboard query to every worker,
without a registry of its own: the map changes exactly when the group does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata


@dataclass
class Ownership:
    """The group's partition owners as of the last assignment this worker received."""

    owners: dict[int, str] = field(default_factory=dict)  # partition -> worker web URL
    workers: list[str] = field(default_factory=list)

    def update(self, table: bytes) -> None:
        decoded = orjson.loads(table) if table else {}
        self.owners = {int(p): url for p, url in decoded.get("owners", {}).items()}
        self.workers = list(decoded.get("workers", []))


def ownership_assignor(url: str, ownership: Ownership) -> type[RangePartitionAssignor]:
    """A range assignor (aiokafka's are classes) that advertises ``url`` and fills ``ownership``."""

    class OwnershipAssignor(RangePartitionAssignor):
        name = "milestream-range"

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), url.encode())

        @classmethod
        def assign(
            cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            assignment = super().assign(cluster, members)
            owners: dict[str, str] = {}
            for member_id, given in assignment.items():
                member_url = members[member_id].user_data.decode(errors="replace")
                for _topic, partitions in given.assignment:
                    for partition in partitions:
                        owners[str(partition)] = member_url
            workers = sorted({metadata.user_data.decode(errors="replace") for metadata in members.values()})
            table = orjson.dumps({"owners": owners, "workers": workers})
            return {
                member_id: ConsumerProtocolMemberAssignment(given.version, given.assignment, table)
                for member_id, given in assignment.items()
            }

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            ownership.update(assignment.user_data)

    return OwnershipAssignor
