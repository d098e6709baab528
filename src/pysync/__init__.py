"""pysync: offline-first sync between IndexedDB in the browser and Amazon DynamoDB."""

__version__ = "0.1.0"

__all__ = ["__version__"]
