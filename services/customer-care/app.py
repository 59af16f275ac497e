"""``create_app(settings) -> FastAPI``: the customer care service alone, mounted at ``/care``."""

from fastapi import FastAPI

from socialzone_common.settings import ServiceSettings
from socialzone_common.web import build_host_app
from socialzone_care.service import SERVICE


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return build_host_app([SERVICE], settings=settings,
                          service_settings={SERVICE.name: settings} if settings else None)
