"""socialzone ingest service."""
