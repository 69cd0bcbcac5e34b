"""Real adapters behind the ports of ``shared.ports``. Each wraps its SDK's errors into ``shared.errors``."""

from shared.adapters.blob import AzureBlobStore
from shared.adapters.ledger import TableLedger
from shared.adapters.publisher import EventGridPublisher, NullPublisher

__all__ = ["AzureBlobStore", "EventGridPublisher", "NullPublisher", "TableLedger"]
