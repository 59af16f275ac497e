"""Package layout: each service folder is a top-level package of its own (folder names
such as ``customer-care`` are not importable). Subpackages are found by walking the
folders, so a service can split a module into a package without touching this file."""

from pathlib import Path

from setuptools import setup

ROOTS = {
    "socialzone_common": "libs/common",
    "socialzone_ingest": "services/ingest",
    "socialzone_identity": "services/identity",
    "socialzone_care": "services/customer-care",
    "socialzone_marketing": "services/marketing",
    "socialzone_sales": "services/sales",
    "socialzone_insights": "services/insights",
}


def packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        for init in sorted(Path(folder).rglob("__init__.py")):
            found.append(".".join((name, *init.parent.relative_to(folder).parts)))
    return found


setup(package_dir=ROOTS, packages=packages())
