"""Every event type socialzone publishes, one module per department.

Importing this package registers every type in ``socialzone_common.catalog.CATALOG``.
"""

from socialzone_common.events import (  # noqa: F401  (importing registers the types)
    care,
    identity,
    ingest,
    insights,
    marketing,
    privacy,
    sales,
)
