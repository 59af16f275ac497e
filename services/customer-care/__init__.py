"""socialzone customer-care service."""
