"""socialzone customer care service: Cases, queues, routing, SLAs, responses and CSAT, seeing the whole customer."""
