# syntax=docker/dockerfile:1
# One image for every process; the command picks what runs:
#   socialzone serve <service> [--no-relay] | relay <service> | migrate <service> | run
# Build: docker build -t socialzone:dev .
# No secret is baked in: settings come from the environment (SOCIALZONE_...)
# and from files in SOCIALZONE_SECRETS_DIR at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: wheels of the project and of its pinned dependencies -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from (see .dockerignore).
COPY pyproject.toml setup.py README.md ./
COPY libs ./libs
COPY services ./services
RUN pip wheel --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="socialzone" \
      org.opencontainers.image.description="Event-driven platform for the integrated social enterprise"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    SOCIALZONE_HOST=0.0.0.0 \
    SOCIALZONE_PORT=8000 \
    SOCIALZONE_DATA_DIR=/var/lib/socialzone

RUN groupadd --system --gid 10001 socialzone \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin socialzone \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/socialzone

# Install from the wheels only (no index): exactly the versions pinned in
# pyproject.toml. The bind mount keeps the wheels out of the image's layers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels socialzone

USER 10001:10001
WORKDIR /var/lib/socialzone
EXPOSE 8000
ENTRYPOINT ["socialzone"]
CMD ["run"]
