"""Errors as RFC 9457 problem details (``application/problem+json``).

Validation errors name the field: ``errors[].field`` is a dotted path such as
``author.identifiers[0].value`` and the ``detail`` repeats the first of them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.status import HTTP_422_UNPROCESSABLE_CONTENT

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://socialzone.dev/problems/"


class ProblemError(Exception):
    """Raise from a domain function or router to answer with a problem document."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str, *, status: int | None = None, title: str | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extensions = extensions


class NotFound(ProblemError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class Unprocessable(ProblemError):
    status, title, slug = 422, "Invalid input", "validation"


class Unauthorized(ProblemError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(ProblemError):
    status, title, slug = 403, "Forbidden", "forbidden"


class TooManyRequests(ProblemError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


def problem_response(status: int, title: str, detail: str | None, *, slug: str | None = None,
                     instance: str | None = None, headers: dict[str, str] | None = None,
                     **extensions: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": _TYPE_BASE + (slug or f"http-{status}"), "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def field_path(loc: tuple | list) -> str:
    """``("body", "author", "identifiers", 0, "value")`` -> ``author.identifiers[0].value``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where, parts = parts[0], parts[1:]
        if where != "body" and not parts:
            return where
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "body"


def _error_item(error: dict[str, Any]) -> dict[str, str]:
    if error.get("type") == "json_invalid":
        # FastAPI puts the character offset where a field would be: ("body", 17).
        reason = (error.get("ctx") or {}).get("error") or "not valid JSON"
        return {"field": "body", "message": f"{error.get('msg', 'JSON decode error')}: {reason}"}
    return {"field": field_path(error.get("loc", ())), "message": error.get("msg", "invalid")}


def validation_problem(errors: list[dict[str, Any]], *, instance: str | None = None) -> JSONResponse:
    items = [_error_item(e) for e in errors]
    first = items[0] if items else {"field": "body", "message": "invalid"}
    return problem_response(HTTP_422_UNPROCESSABLE_CONTENT, "Invalid input",
                            f"{first['field']}: {first['message']}", slug="validation",
                            instance=instance, errors=items)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, slug=exc.slug,
                                instance=request.url.path, headers=exc.headers, **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()), instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, _reason(exc.status_code), str(exc.detail) if exc.detail else None,
                                instance=request.url.path, headers=getattr(exc, "headers", None))


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
