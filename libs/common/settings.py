"""Typed settings, read from the environment (``SOCIALZONE_...``, ``__`` for nesting)
and from secret files (``SOCIALZONE_SECRETS_DIR``, default ``/run/secrets/socialzone``).

Built by :func:`load_settings`, never as an import-time global.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SecretsSettingsSource, SettingsConfigDict

DEFAULT_SECRETS_DIR = "/run/secrets/socialzone"
DEV_PLACEHOLDER_SECRET = "change-me"


# A settings error names the setting but never repeats its input: that input holds the
# secrets (pydantic would print e.g. a malformed API key's "key" in the start-up error).
_HIDE_INPUT = ConfigDict(hide_input_in_errors=True)


class KafkaSettings(BaseModel):
    model_config = _HIDE_INPUT

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "socialzone"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # Topics are declared as Strimzi KafkaTopic resources in production; the
    # services create them from the catalog only where this allows it.
    create_topics: bool = True
    # Used only when the services create topics themselves (create_topics).
    replication_factor: int = Field(default=1, ge=1)
    request_timeout_ms: int = 30_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000


class LocalBusSettings(BaseModel):
    # Where the durable log lives; default: <data_dir>/bus.db
    path: Path | None = None
    retention_hours: float = 7 * 24
    # FULL survives power loss; NORMAL survives a killed process (kill -9) only.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    session_timeout_s: float = 10.0


class ApiKey(BaseModel):
    """One bearer key. Give either the key itself or its SHA-256 hex digest."""

    model_config = _HIDE_INPUT

    name: str
    scopes: list[str]
    key: SecretStr | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError(f"api key {self.name!r}: give exactly one of key or sha256")
        return self


class ConsumerSettings(BaseModel):
    max_attempts: int = Field(default=5, ge=1)
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 5.0
    # Like arroyo's DLQ limit: more than this many dead letters within the window
    # stops the consumer (a bad deploy must not dead-letter the whole topic).
    dlq_limit: int = 100
    dlq_window_s: float = 60.0
    batch_size: int = 500


class ServiceSettings(BaseSettings):
    """What every service reads. Each service subclasses it with its own fields."""

    model_config = SettingsConfigDict(
        env_prefix="SOCIALZONE_", env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True,
    )

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = 8000

    # None: a SQLite file per service under data_dir. A PostgreSQL URL: one
    # schema per service in that database. database_urls overrides per service.
    database_url: str | None = None
    database_urls: dict[str, str] = Field(default_factory=dict)
    # PostgreSQL schema of a service: <prefix><service> (tests use a unique prefix).
    database_schema_prefix: str = ""
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "NORMAL"
    migrate_on_start: bool = True

    bus: Literal["local", "kafka"] = "local"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    local_bus: LocalBusSettings = Field(default_factory=LocalBusSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)

    # Threads for blocking work (database, local bus) shared by relays, consumers and
    # background loops of every service in the process.
    worker_threads: int = Field(default=32, ge=4)
    run_consumers: bool = True
    run_relay: bool = True
    # `socialzone run` only: the services whose consumers, relay and background loops run in a
    # child process each (`socialzone work <service>`, restarted if it dies), their HTTP API
    # staying in the main process. Each child has an interpreter of its own: in one process
    # the interpreter lock is the limit (bench care at 1,000/s: identity's attribution and
    # care's cases are the two largest shares). [] keeps everything in one process. A service
    # named twice gets a second child with its consumers only: one more member of each of its
    # consumer groups (["identity", "identity", "care"]: attribution in two processes).
    consumer_processes: list[str] = Field(default_factory=lambda: ["identity", "care"])
    # Rows the relay publishes (and then marks) per pass: a pass costs a wait for the
    # database's writer turn, so a busy service drains its outbox in bigger passes
    # (measured in the all-in-one process at 1,000 interactions/s: identity's backlog
    # grew to 20,000 events with 500, stayed under 4,000 with 2,000).
    relay_batch_size: int = Field(default=2000, ge=1)
    relay_poll_interval_s: float = 0.2
    outbox_retention_hours: float = 24.0
    inbox_retention_days: float = 30.0

    admin_key: SecretStr | None = None
    api_keys: list[ApiKey] = Field(default_factory=list)

    otel_exporter_otlp_endpoint: str | None = None
    log_level: str = "INFO"
    log_json: bool = True
    # Service-to-service HTTP (httpx) timeout.
    http_timeout_s: float = 2.0

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        # A secret file is named after its field (``admin_key``, ``api_keys``), as Docker
        # and Kubernetes mount them; a file named like the variable (``SOCIALZONE_ADMIN_KEY``) works too.
        secrets_dir = getattr(file_secret_settings, "secrets_dir", None)
        by_field_name = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir, env_prefix="")
        return init_settings, env_settings, dotenv_settings, file_secret_settings, by_field_name

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        # ``is not None``: an empty SecretStr is falsy, and "" is a default secret too.
        if self.admin_key is not None and self.admin_key.get_secret_value() in ("", DEV_PLACEHOLDER_SECRET):
            raise ValueError("admin_key: refusing to start in production with a default secret")
        placeholder_digest = hashlib.sha256(DEV_PLACEHOLDER_SECRET.encode()).hexdigest()
        for key in self.api_keys:
            if (key.key is not None and key.key.get_secret_value() in ("", DEV_PLACEHOLDER_SECRET)) or (
                    key.sha256 is not None and key.sha256.lower() == placeholder_digest):
                raise ValueError(f"api_keys: {key.name!r} uses a default secret in production")
        if self.admin_key is None and not self.api_keys:
            raise ValueError("api_keys: production needs at least one API key or SOCIALZONE_ADMIN_KEY")
        return self

    def database_url_for(self, service: str) -> str:
        if service in self.database_urls:
            return self.database_urls[service]
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def database_schema_for(self, service: str) -> str:
        return f"{self.database_schema_prefix}{service}"

    def local_bus_path(self) -> Path:
        return self.local_bus.path or self.data_dir / "bus.db"

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S] = ServiceSettings, **overrides) -> S:  # type: ignore[assignment]
    """Build settings from the environment and secret files (never at import time)."""
    secrets_dir = os.environ.get("SOCIALZONE_SECRETS_DIR", DEFAULT_SECRETS_DIR)
    if Path(secrets_dir).is_dir():
        return cls(_secrets_dir=secrets_dir, **overrides)
    return cls(**overrides)
