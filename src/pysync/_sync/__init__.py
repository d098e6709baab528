"""Sync between a replica and DynamoDB: push (upstream), pull (downstream), the engine."""

from ._engine import Sync, SyncReport
from ._pull import PullReport
from ._push import PushReport

__all__ = ["PullReport", "PushReport", "Sync", "SyncReport"]
