"""socialzone sales service."""
