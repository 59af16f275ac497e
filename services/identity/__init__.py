"""socialzone identity service: One customer across every network and the CRM, and the timeline every department works from."""
