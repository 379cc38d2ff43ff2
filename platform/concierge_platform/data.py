"""Data: the three DynamoDB tables the runtime's DynamoDB store uses (bookings, conversations, sessions).

The key schema, attributes, indexes and stream view come from the store itself
(``runtime.stores.dynamodb.table_spec``, the ``create_table`` arguments it uses under moto and for
``create_tables``) and the TTL attribute from its ``TTL_ATTR``: one source of truth, so the deployed
tables cannot drift from what the code queries. Streams carry both images
because the change seam needs them (confirmed -> cancelled).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pulumi
import pulumi_aws as aws

from .lambda_code import REPO_ROOT


def store_schema() -> ModuleType:
    """``runtime.stores.dynamodb``, also when Pulumi runs the program with only ``platform/`` on sys.path."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    from runtime.stores import dynamodb

    return dynamodb


TABLES: dict[str, str] = {  # logical key -> the runtime's environment variable for its name
    "bookings": "BOOKING_TABLE",
    "conversations": "CHAT_HISTORY_TABLE",
    "sessions": "SESSION_TABLE",
}


@dataclass
class DataArgs:
    name: str
    deletion_protection: bool
    protect: bool = False


def _key(schema: list[dict[str, str]], kind: str) -> str | None:
    return next((k["AttributeName"] for k in schema if k["KeyType"] == kind), None)


def table_shape(spec: dict[str, Any]) -> dict[str, Any]:
    """boto3 ``create_table`` arguments -> ``aws.dynamodb.Table`` keyword arguments (keys, indexes, stream)."""
    return {
        "hash_key": _key(spec["KeySchema"], "HASH"),
        "range_key": _key(spec["KeySchema"], "RANGE"),
        "attributes": [{"name": a["AttributeName"], "type": a["AttributeType"]}
                       for a in spec["AttributeDefinitions"]],
        "global_secondary_indexes": [
            {"name": g["IndexName"], "hash_key": _key(g["KeySchema"], "HASH"),
             "range_key": _key(g["KeySchema"], "RANGE"), "projection_type": g["Projection"]["ProjectionType"],
             "non_key_attributes": g["Projection"].get("NonKeyAttributes")}
            for g in spec.get("GlobalSecondaryIndexes", [])
        ],
        "stream_view_type": spec["StreamSpecification"]["StreamViewType"],
    }


class Data(pulumi.ComponentResource):
    """On-demand, encrypted, point-in-time-recoverable tables with streams and TTL."""

    def __init__(self, name: str, args: DataArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("concierge:platform:Data", name, None, opts)
        schema = store_schema()
        self.tables: dict[str, aws.dynamodb.Table] = {}
        for key in TABLES:
            physical = f"{args.name}-{key}"
            self.tables[key] = aws.dynamodb.Table(
                f"{name}-{key}",
                name=physical,
                billing_mode="PAY_PER_REQUEST",
                **table_shape(schema.table_spec(physical)),
                server_side_encryption={"enabled": True},
                point_in_time_recovery={"enabled": True},
                stream_enabled=True,
                ttl={"attribute_name": schema.TTL_ATTR, "enabled": True},
                deletion_protection_enabled=args.deletion_protection,
                tags={"Name": f"{args.name}-{key}"},
                # Fixed names (operators and the runtime's own schema know them), so a replacement must delete
                # first - and `protect` (config, on in prod) makes Pulumi refuse to delete or replace at all.
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect, delete_before_replace=True),
            )
        self.register_outputs({k: t.name for k, t in self.tables.items()})

    @property
    def environment(self) -> dict[str, pulumi.Output[str]]:
        """What the runtime reads: BOOKING_TABLE, CHAT_HISTORY_TABLE, SESSION_TABLE."""
        return {env: self.tables[key].name for key, env in TABLES.items()}
