"""socialzone insights service."""
