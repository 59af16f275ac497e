"""socialzone identity service."""
