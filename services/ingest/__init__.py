"""socialzone ingest service: Connectors for social networks, blogs and the CRM; de-duplication and enrichment. Publishes ingest.interaction.recorded."""
