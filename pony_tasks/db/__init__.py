"""PostgreSQL access: the embedded server, connections, versioned migrations and COPY-based bulk writes."""

from pony_tasks.db.connection import connect, database_url
from pony_tasks.db.migrations import MigrationError, migration_status, upgrade

__all__ = ["MigrationError", "connect", "database_url", "migration_status", "upgrade"]
