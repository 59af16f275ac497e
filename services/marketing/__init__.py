"""socialzone marketing service."""
