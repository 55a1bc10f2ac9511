"""All of Herald's settings, read from HERALD_* environment variables (see docs/settings.md)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Documented dev credentials: used only when HERALD_DEV_MODE is on and nothing else is set.
DEV_API_KEY = "herald-dev-key"
DEV_ADMIN_TOKEN = "herald-dev-admin"
DEV_SMS_TOKEN = "herald-dev-sms"

CommaList = Annotated[list[str], NoDecode]
# The hard ceilings of a message's fields: the OpenAPI schema states them (maxLength) for every
# deployment alike (api/jobs/models.py; tests/docs checks the schema does not vary with the settings);
# HERALD_MAX_SUBJECT_CHARS, HERALD_MAX_EMAIL_BODY_CHARS and HERALD_MAX_SMS_CHARS can only lower them.
MAX_SUBJECT_CHARS = 998  # RFC 5322's longest line
MAX_EMAIL_BODY_CHARS = 100_000
MAX_SMS_CHARS = 1600  # ten concatenated segments
WEBHOOK_SECRET_HINT = (
    "HERALD_WEBHOOK_SECRET is not set. Outside dev mode Herald does not generate one: every worker "
    "must sign with the same secret, so give every worker and API process the same "
    "HERALD_WEBHOOK_SECRET=whsec_<base64 of 32 random bytes>; make one with: python -c "
    "\"import base64, secrets; print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\" "
    "(dev mode, HERALD_DEV_MODE=true as under make run, generates one into HERALD_DATA_DIR/webhook_secret)"
)


ENCRYPTION_KEY_HINT = (
    "Outside dev mode Herald does not generate one: every API and worker process must encrypt and "
    "decrypt with the same keys, so give them all the same HERALD_ENCRYPTION_KEY=<base64 of 32 random "
    'bytes>; make one with: python -c "import base64, secrets; '
    'print(base64.b64encode(secrets.token_bytes(32)).decode())" '
    "(dev mode, HERALD_DEV_MODE=true as under make run, generates one into HERALD_DATA_DIR/encryption_key)"
)
KEY_BYTES = 32  # AES-256
DEFAULT_TENANT_WEIGHT = 1.0
# HERALD_WORKER_PROCESSES's ceiling: each process holds its own connections, caches and slots.
MAX_WORKER_PROCESSES = 32


class StartupRefused(RuntimeError):
    """A setting without which an API or worker process must not start; the message says what to set."""


class MissingWebhookSecret(StartupRefused):
    """Outside dev mode, HERALD_WEBHOOK_SECRET is required (no per-process secret)."""


class EncryptionKeyError(StartupRefused):
    """HERALD_ENCRYPTION_KEY is missing outside dev mode, or is not a list of 32-byte base64 keys."""


@dataclass(frozen=True)
class EncryptionKey:
    """One key of the payload codec and its id, written into every payload it encrypts."""

    id: str
    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> EncryptionKey:
        """`BASE64` (the id is a digest of the key) or `ID:BASE64` (an id of the operator's choosing)."""
        key_id, _, encoded = text.rpartition(":")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(
                f"HERALD_ENCRYPTION_KEY: a key is not the base64 of {KEY_BYTES} bytes (AES-256); "
                f"each key is BASE64 or ID:BASE64, several space- or comma-separated. {ENCRYPTION_KEY_HINT}"
            )
        return cls(id=key_id or hashlib.sha256(key).hexdigest()[:16], key=key)


class Settings(BaseSettings):
    # An empty variable (e.g. passed through by docker compose) means "unset", not "invalid".
    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore", env_ignore_empty=True)

    dev_mode: bool = False
    data_dir: Path = Path(".data")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    # Where operators open the Temporal Web UI (the dashboard links each job's run there);
    # unset: http://127.0.0.1:<temporal_ui_port>, the dev server's.
    temporal_ui_url: str | None = None
    # TLS to the Temporal frontend (mTLS when a client certificate and key are given).
    temporal_tls: bool = False
    temporal_tls_ca_file: Path | None = None
    temporal_tls_cert_file: Path | None = None
    temporal_tls_key_file: Path | None = None
    temporal_tls_server_name: str | None = None
    # The dev server's SQLite file with synchronous=FULL: survives an OS crash, at about half the speed.
    temporal_full_sync: bool = False
    # How long finished jobs, dead letters included, stay readable (the namespace's retention);
    # `make run` sets it on the dev server, a cluster's operator sets it on the namespace.
    temporal_retention_days: float = 30

    api_keys: CommaList = Field(default_factory=list)
    admin_token: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 256 * 1024
    # Field limits an operator can lower (not raise: the OpenAPI schema states the ceilings).
    max_subject_chars: int = Field(MAX_SUBJECT_CHARS, ge=1, le=MAX_SUBJECT_CHARS)
    max_email_body_chars: int = Field(MAX_EMAIL_BODY_CHARS, ge=1, le=MAX_EMAIL_BODY_CHARS)
    max_sms_chars: int = Field(MAX_SMS_CHARS, ge=1, le=MAX_SMS_CHARS)
    # A webhook's `data`, as compact UTF-8 JSON; unset: only max_body_bytes bounds it.
    max_webhook_data_bytes: int | None = Field(None, ge=4)
    # Idempotency-Key (api/core/idempotency.py): how long a key's first answer is kept, and how long a
    # request holds its key before a retry with the same key may run in its place (its process died).
    idempotency_keep_hours: float = Field(24, gt=0)
    idempotency_lease_seconds: float = Field(30, gt=0)
    # Live status (api/jobs/live.py): open SSE streams and waiting long polls per API process; the
    # keep-alive comment's period; the re-read period while a job's send retries on the server.
    max_live_streams: int = Field(200, ge=0)
    # Batches (POST /notify/batch): most items per request, and the largest batch body (its own
    # limit: a thousand items do not fit in max_body_bytes). Most items in one run (a larger batch is
    # split into chunks: workflows/batch_chunks.py, which also keeps each run's input under Temporal's
    # 2 MB payload limit). Items per send activity, such activities in flight per run, and (worker)
    # batch items being sent at once per channel, whatever slice or batch they are in.
    max_batch_items: int = Field(10_000, ge=1, le=100_000)
    max_batch_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # At most 1,000 (the default): a chunk's result (every item's state) then stays under Temporal's 2 MB payload limit
    # (tests/activities/test_failure_size.py).
    batch_chunk_items: int = Field(1000, ge=1, le=1000)
    batch_slice_items: int = Field(50, ge=1, le=500)
    batch_slices_in_flight: int = Field(4, ge=1, le=50)
    batch_send_concurrency: int = Field(50, ge=1, le=1000)
    live_heartbeat_seconds: float = Field(15, gt=0)
    live_refresh_seconds: float = Field(2, gt=0)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30
    # SMTP sessions kept open between messages (activities/email.py SmtpSessions): reused within this
    # many seconds of their last message (0: a connection per message), for at most this many messages.
    smtp_session_idle_seconds: float = Field(30, ge=0)
    smtp_session_messages: int = Field(100, ge=1)
    # The name Herald gives in EHLO; default: this machine's fully qualified name.
    smtp_local_hostname: str | None = None
    email_from: str = "Herald <herald@localhost>"
    # A second SMTP relay (same message, same Message-ID): takes an email's last attempt (jobs with
    # 2 or more attempts), as HERALD_SMS_FALLBACK_URL does for SMS. Unset: no fallback.
    smtp_fallback_host: str | None = None
    smtp_fallback_port: int = 25
    smtp_fallback_username: str | None = None
    smtp_fallback_password: str | None = None
    smtp_fallback_starttls: bool = False

    sms_gateway_url: str = "http://127.0.0.1:8026/messages"
    sms_gateway_token: str = DEV_SMS_TOKEN
    sms_fallback_url: str | None = None
    sms_fallback_token: str | None = None

    # The payload codec's keys (common/codec.py): base64 of 32 bytes, or ID:BASE64; several, space- or
    # comma-separated, while rotating: the first encrypts, every one decrypts.
    encryption_key: str | None = None
    # Browser origins allowed to call the codec endpoint (the Temporal Web UI's); unset: the origin of
    # temporal_ui_url, and in dev mode both http://127.0.0.1 and http://localhost at temporal_ui_port.
    codec_origins: CommaList = Field(default_factory=list)

    # Standard Webhooks secrets (whsec_...); several, space- or comma-separated, while rotating.
    webhook_secret: str | None = None
    webhook_allow_hosts: CommaList = Field(default_factory=list)
    webhook_connect_timeout_seconds: float = 5
    webhook_read_timeout_seconds: float = 10
    webhook_max_response_bytes: int = 64 * 1024
    # Longest Retry-After Herald will honour; a receiver cannot park a job for a week.
    retry_after_cap_seconds: float = 3600

    # Start-to-close of one send attempt; schedule-to-close is derived from the retry policy.
    send_timeout_seconds: float = 30
    # A send attempt heartbeats while it runs; one whose worker died is retried this long after its
    # last heartbeat instead of after the whole start-to-close (0: no heartbeat timeout).
    send_heartbeat_timeout_seconds: float = Field(10, ge=0)
    # On SIGTERM/SIGINT the worker stops polling and gives the sends in flight this long to finish;
    # what is still running then is handed back to Temporal (retried by another worker).
    worker_shutdown_grace_seconds: float = Field(20, ge=0)
    # Bounded memory: each of the worker's task-queue Workers (four per process) keeps up to this
    # many workflows in its sticky cache and runs up to this many workflow tasks at once.
    worker_max_cached_workflows: int = Field(150, ge=0)
    worker_max_concurrent_workflow_tasks: int = Field(100, ge=2)
    # Worker processes `python -m worker` runs (it and N-1 children it supervises), each with the four
    # Workers: one Python process runs on one core at a time (the GIL), a batch's sends need more.
    worker_processes: int = Field(1, ge=1, le=MAX_WORKER_PROCESSES)

    email_concurrency: int = 50
    sms_concurrency: int = 50
    webhook_concurrency: int = 100
    maintenance_concurrency: int = 4
    email_rate_limit: float | None = None
    sms_rate_limit: float | None = None
    webhook_rate_limit: float | None = None
    maintenance_rate_limit: float | None = None
    # Tenants (docs/tenants.md): each tenant's share of a busy channel, `acme=3,globex=1` (others 1), given to
    # Temporal as its fairness weights; and each tenant's sends per second per channel, across all workers.
    tenant_weights: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    tenant_rate_limit: float | None = Field(None, gt=0)

    # The worker's Prometheus endpoint (the SDK's metrics and Herald's); port 0 turns it off.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)

    # Cleanup jobs work on these directories.
    temp_dir: Path = Path(".data/tmp")
    temp_max_age_hours: float = 24
    log_dir: Path = Path(".data/logs")
    log_retention_days: float = 14
    session_dir: Path = Path(".data/sessions")

    # The built-in schedules (daily cleanup at 00:00, token cleanup at 02:00) run in this IANA zone.
    schedule_timezone: str = "UTC"

    # SMS per recipient number (and per user) in any rolling hour, counted in Temporal across every
    # API replica (api/jobs/throttle.py); the next request is a 429. 0 turns throttling off.
    sms_per_hour: int = Field(10, ge=0)
    # Where the typed notifications' Jinja2 templates are (<type>.subject.j2, .txt.j2, .html.j2 and
    # <locale>/ translations); unset: the `templates/` directory beside Herald's code.
    templates_dir: Path | None = None

    @field_validator("api_keys", "webhook_allow_hosts", "codec_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _tenant_keys(cls, value: list[str]) -> list[str]:
        from common.tenants import parse_keys  # (imported here: keeps settings import-light)

        parse_keys(value)  # a bad entry is refused here, with a message that names it
        return value

    @field_validator("tenant_weights", mode="before")
    @classmethod
    def _tenant_weights(cls, value: object) -> object:
        from common.tenants import parse_weights  # (imported here: keeps settings import-light)

        return parse_weights(value) if isinstance(value, str) else value

    @field_validator("schedule_timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        from common.schedules import validate_timezone  # (imported here: keeps settings import-light)

        return validate_timezone(value)

    @model_validator(mode="after")
    def _dev_credentials(self) -> Settings:
        if self.dev_mode:
            if not self.api_keys:
                self.api_keys = [DEV_API_KEY]
            if not self.admin_token:
                self.admin_token = DEV_ADMIN_TOKEN
        return self

    def client_keys(self) -> dict[str, str]:
        """Each client key → its tenant (common/tenants.py), in HERALD_API_KEYS's order."""
        from common.tenants import parse_keys

        return parse_keys(self.api_keys)

    def tenant_names(self) -> list[str]:
        """The configured tenants, the default one (the first entry's) first."""
        return list(dict.fromkeys(self.client_keys().values()))

    def tenant_weight(self, tenant: str) -> float:
        """A tenant's fairness weight: HERALD_TENANT_WEIGHTS's, else 1."""
        return self.tenant_weights.get(tenant, DEFAULT_TENANT_WEIGHT)

    def concurrency(self, channel: str) -> int:
        limit: int = getattr(self, f"{channel}_concurrency")
        return limit

    def rate_limit(self, channel: str) -> float | None:
        rate: float | None = getattr(self, f"{channel}_rate_limit")
        return rate

    def webhook_secrets(self) -> list[str]:
        """Active signing secrets; in their absence, in dev mode only, one generated once into the data dir."""
        if self.webhook_secret and self.webhook_secret.replace(",", " ").split():
            return self.webhook_secret.replace(",", " ").split()
        if not self.dev_mode:
            raise MissingWebhookSecret(WEBHOOK_SECRET_HINT)
        return [load_or_create_secret(self.data_dir / "webhook_secret")]

    def encryption_keys(self) -> list[EncryptionKey]:
        """The codec's keys, the encrypting one first; in their absence, in dev mode only, one
        generated once into the data dir."""
        texts = (self.encryption_key or "").replace(",", " ").split()
        if not texts:
            if not self.dev_mode:
                raise EncryptionKeyError(f"HERALD_ENCRYPTION_KEY is not set. {ENCRYPTION_KEY_HINT}")
            texts = [load_or_create_secret(self.data_dir / "encryption_key", prefix="")]
        keys = [EncryptionKey.parse(text) for text in texts]
        if len({key.id for key in keys}) != len(keys):
            raise EncryptionKeyError("HERALD_ENCRYPTION_KEY: two keys have the same id")
        return keys

    def require_secrets(self) -> None:
        """Stop a process at start-up (before it connects anywhere) that would have no shared webhook
        secret or payload key, or a malformed key."""
        if not self.dev_mode:
            self.webhook_secrets()
        self.encryption_keys()

    def codec_allowed_origins(self) -> list[str]:
        """The browser origins the codec endpoint answers (CORS), e.g. the Temporal Web UI's."""
        if self.codec_origins:
            return [origin.rstrip("/") for origin in self.codec_origins]
        ui = urlsplit(self.temporal_ui_url or f"http://127.0.0.1:{self.temporal_ui_port}")
        origins = [f"{ui.scheme}://{ui.netloc}"]
        if self.dev_mode:
            origins += [f"http://{host}:{self.temporal_ui_port}" for host in ("127.0.0.1", "localhost")]
        return list(dict.fromkeys(origins))


def load_or_create_secret(path: Path, prefix: str = "whsec_") -> str:
    """A secret of 32 random bytes (base64, after `prefix`) kept in `path`: made once, then read."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = prefix + base64.b64encode(secrets.token_bytes(32)).decode()
    # Write-then-rename so two processes starting together agree on one secret.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(secret + "\n")
    os.chmod(tmp, 0o600)
    if not path.exists():
        os.replace(tmp, path)
    else:
        tmp.unlink()
    return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
