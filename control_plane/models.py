"""The SQL schema: accounts, keys, the catalog, the double-entry ledger and usage.

Money and token counts are BigInteger nano-USD / counts. Every change here needs an Alembic
revision under migrations/versions.
"""
from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    validates,
)

# SQLite only auto-numbers INTEGER PRIMARY KEY; elsewhere high-volume tables get 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# fee: a card top-up's platform fee (system:deposits to system:fees, no wallet leg); expiry:
# unused top-up credit expired (TOLLGATE_CREDIT_EXPIRY_DAYS).
TRANSACTION_KINDS = ("deposit", "bonus", "usage", "refund", "adjustment", "fee", "expiry")
PROTOCOLS = ("openai", "anthropic")
KEY_STATUSES = ("active", "revoked")
# disabled: deleted by its owner; suspended: stopped by an admin until reactivated.
ACCOUNT_STATUSES = ("active", "disabled", "suspended")


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as the API and the CLI show times: 2025-01-31T12:00:00.123Z."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UtcDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, also on SQLite (which stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint(_in("status", ACCOUNT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Σ of this account's wallet entries, updated in the same SQL transaction as the entries.
    balance_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    # Default rate limits for keys that have none of their own (None: unlimited).
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # None until the owner followed the link mailed to the address (accounts an operator made
    # count as verified).
    email_verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Deleted by its owner: keys revoked, login closed; the row and its ledger stay.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # An admin's second factor: the TOTP secret (encrypted with the installation secret), set once
    # enrolled, and the last time step a code was accepted for (a code works once).
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # The IANA time zone statements, invoices and the console show this account's times in.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # Mail the owner when the balance falls below this (None: no alert); sent is set when mailed
    # and cleared when the balance is back at or above it, so each crossing mails once.
    balance_alert_nano: Mapped[int | None] = mapped_column(BigInteger)
    balance_alert_sent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    @validates("email")
    def _normalize_email(self, _key, email: str) -> str:
        return email.strip().lower()


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_in("status", KEY_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    limit_nano: Mapped[int | None] = mapped_column(BigInteger)
    # Charge an at-cost request a fallback route served at most what the model's first route costs.
    cap_fallback_price: Mapped[bool] = mapped_column(Boolean, default=False)
    # Requests and tokens per minute (None: no rate limit).
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    # A JSON array of the model names (or aliases) the key may call; None: every model.
    allowed_models: Mapped[str | None] = mapped_column(Text)
    # The key is refused from this moment on (None: never expires).
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Last given a new secret (same id, limits and history).
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The highest share of limit_nano (0, 80 or 100 percent) its owner was mailed about; lowered
    # again when the limit is raised, so each crossing mails once.
    limit_alert_percent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    account: Mapped[Account] = relationship()


class ConsoleSession(Base):
    """A signed-in browser: its cookie carries a random token, this row the token's SHA-256. Log
    out deletes it; a password change deletes the account's others."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # An admin console session (password and second factor): it expires when idle for
    # TOLLGATE_ADMIN_SESSION_MINUTES, each admin request moving expires_at on.
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class RecoveryCode(Base):
    """One of an admin's single-use codes that stand in for a TOTP code (shown once, at
    enrolment; only their SHA-256 is kept)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AdminApiKey(Base):
    """An admin's key for the admin JSON API (/api/admin/v1): not a customer key, never published
    to the gateway, so it cannot call models. Read-only keys may only GET."""

    __tablename__ = "admin_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(24))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Provider(Base):
    __tablename__ = "providers"
    __table_args__ = (CheckConstraint(_in("protocol", PROTOCOLS), name="protocol"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    protocol: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(String(2000))
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Disabled by an admin: its routes are left out of the models' documents (None: enabled).
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# The provider statuses a request may be retried on with the model's next route (502 and 504 also
# stand for a provider unreachable or timed out); a model's retry_on is a subset of them.
RETRY_STATUSES = (429, 500, 502, 503, 504, 529)


class Model(Base):
    """What customers call. Its routes are the providers that serve it; it is charged either at
    the serving route's cost (at_cost) or at its own customer price versions (fixed)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    at_cost: Mapped[bool] = mapped_column(Boolean, default=True)
    # Comma-separated, ascending: the statuses on which the hot path tries the next route.
    retry_on: Mapped[str] = mapped_column(String(64), default=",".join(map(str, RETRY_STATUSES)))
    max_output: Mapped[int] = mapped_column(Integer, default=16384)
    # The context window: a request whose input the provider may fetch or keep beyond its body
    # (media by URL, stored files, earlier responses, server-side tools) is held at this many.
    max_input: Mapped[int] = mapped_column(Integer, default=200000)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Route(Base):
    """One provider (and its name for the model) that serves a model: lower priority is tried
    first, equal priorities share requests by weight. Its cost is its newest price version."""

    __tablename__ = "routes"
    __table_args__ = (
        UniqueConstraint("model_id", "provider_id", "upstream_model",
                         name="uq_routes_model_id_provider_id_upstream_model"),
        # Route ids name routes in usage records and route health: never reused after a removal.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    upstream_model: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    # The id of this route's entry in a price list (`tollgate prices sync`), e.g.
    # "anthropic/claude-sonnet-4" on OpenRouter; None: its cost is kept by hand.
    price_source_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    model: Mapped[Model] = relationship()
    provider: Mapped[Provider] = relationship()


class Alias(Base):
    """Another name customers may call a model by; never also a model's name."""

    __tablename__ = "aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    model: Mapped[Model] = relationship()


class PriceVersion(Base):
    """Nano-USD per 1M tokens, as the operator gave them (None = use the default of
    docs/internals.md). Never updated in place. With route_id None it is a customer price of a
    fixed-price model; with route_id set, that route's provider cost (a cost version). The newest
    row of each is current."""

    __tablename__ = "price_versions"
    __table_args__ = (
        Index("ix_price_versions_model_newest", "model_id", "id"),
        Index("ix_price_versions_route_newest", "route_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    # Not a foreign key: a removed route's cost versions stay, as usage rows and records still in
    # the streams name them.
    route_id: Mapped[int | None] = mapped_column(Integer)
    input: Mapped[int] = mapped_column(BigInteger)
    cached_input: Mapped[int | None] = mapped_column(BigInteger)
    cache_write: Mapped[int | None] = mapped_column(BigInteger)
    cache_write_1h: Mapped[int | None] = mapped_column(BigInteger)
    output: Mapped[int] = mapped_column(BigInteger)
    reasoning: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Where the prices came from ("cli", "admin console", "admin api", "sync <url>") and who made
    # the version (the audit log's actor).
    source: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_by: Mapped[str] = mapped_column(String(200), default="", server_default="")


class PriceHold(Base):
    """A price change a sync found but did not apply (a rise above the limit, a price becoming
    zero, a class lost): it waits for an admin to approve or reject it in the console."""

    __tablename__ = "price_holds"
    __table_args__ = (CheckConstraint(_in("state", ("pending", "approved", "rejected")), name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    route_id: Mapped[int] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(500))
    # JSON: the proposed price of every class (nano-USD per 1M tokens, null for none) and the
    # current version it was compared with.
    proposed: Mapped[str] = mapped_column(Text)
    current_version_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """One change to money or configuration: append-only (audit.py refuses updates and deletes
    in the ORM; triggers refuse them in SQL)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    # "admin ops@example.com", "cli root", "admin key 3 (ops@example.com)", "customer 7", "system".
    actor: Mapped[str] = mapped_column(String(200))
    actor_account_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # create, update, delete, credit, …
    entity: Mapped[str] = mapped_column(String(64))  # account, api_key, provider, route, …
    entity_id: Mapped[str] = mapped_column(String(64))
    # JSON objects of the changed fields' values (secrets redacted); None for create / delete.
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    # Why: the reason given, or the price list a sync read.
    reason: Mapped[str] = mapped_column(String(1000), default="", server_default="")


class LedgerAccount(Base):
    """'wallet:<account id>' (account_id set) or a system account such as 'system:usage'."""

    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(100), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), unique=True)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint(_in("kind", TRANSACTION_KINDS), name="kind"),
        Index("ix_ledger_transactions_account_newest", "account_id", "id"),
        # Matches `WHERE ~published` as each dialect renders it: the worker polls this every few
        # seconds over a table that grows by a row per request.
        Index(
            "ix_ledger_transactions_unpublished",
            "id",
            postgresql_where=text("NOT published"),
            sqlite_where=text("published = 0"),
        ),
        # Credit expiry (billing/credit_expiry.py) looks for accounts with a top-up past a date.
        Index(
            "ix_ledger_transactions_account_topups",
            "account_id",
            "created_at",
            postgresql_where=text("kind IN ('deposit', 'bonus')"),
            sqlite_where=text("kind IN ('deposit', 'bonus')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    description: Mapped[str] = mapped_column(String(500), default="")
    # Applied to the Redis balance (usage is always: Redis debited it first).
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    entries: Mapped[list[LedgerEntry]] = relationship(back_populates="transaction")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_ledger_account_newest", "ledger_account_id", "transaction_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    ledger_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")



class Usage(Base):
    """One row per proxied request, from the hot path's usage record. No prompt text, ever."""

    __tablename__ = "usage"
    __table_args__ = (
        Index("ix_usage_account_newest", "account_id", "id"),
        # The request log's filters, each newest first (migration 0008, bench/console_logs.py).
        Index("ix_usage_key_newest", "key_id", "id"),
        Index("ix_usage_account_model_newest", "account_id", "model", "id"),
        # A usage transaction's rows: it charges a batch's requests of one account (migration 0011).
        Index("ix_usage_transaction", "transaction_id"),
        Index(
            "ix_usage_account_errors_newest",
            "account_id",
            "id",
            postgresql_where=text("status >= 400"),
            sqlite_where=text("status >= 400"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    model: Mapped[str] = mapped_column(String(200))
    # The name the client asked for: the model's or one of its aliases.
    requested_model: Mapped[str] = mapped_column(String(200), default="", server_default="")
    upstream_model: Mapped[str] = mapped_column(String(200), default="")
    provider: Mapped[str] = mapped_column(String(100), default="")
    # The price version the charge was computed at: a fixed-price model's customer price, or the
    # serving route's cost version for an at-cost model.
    price_version_id: Mapped[int | None] = mapped_column(ForeignKey("price_versions.id"))
    # The serving route (not a foreign key: routes can be removed) and what the provider charged
    # for the request at its cost version (uncapped), for the operator's margin.
    route_id: Mapped[int | None] = mapped_column(Integer)
    cost_version_id: Mapped[int | None] = mapped_column(ForeignKey("price_versions.id"))
    provider_cost_nano: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Provider attempts (routes tried, retries) and the statuses of the failed ones, comma-separated.
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    failed_statuses: Mapped[str] = mapped_column(String(64), default="", server_default="")
    endpoint: Mapped[str] = mapped_column(String(64), default="")
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int] = mapped_column(Integer)
    billing_basis: Mapped[str] = mapped_column(String(16))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nano: Mapped[int] = mapped_column(BigInteger)
    # Held for the request (the most it may be charged), and the provider-reported cost above it,
    # not charged: the operator's loss.
    hold_nano: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    overage_nano: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttfb_ms: Mapped[int | None] = mapped_column(Integer)
    # A failed request's error as its client got it: the catalogue code of the gateway's error,
    # or the provider's own code (or type), and its message cut to 500 characters; "" for none.
    error_code: Mapped[str] = mapped_column(String(64), default="", server_default="")
    error_message: Mapped[str] = mapped_column(String(500), default="", server_default="")
    node: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # None when the request cost nothing (no ledger movement).
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))


class UsageDaily(Base):
    """An account's usage of a model on a UTC day, added to with each usage row in the same SQL
    transaction: the dashboard's totals and chart, without a scan of the usage table. The ids of
    the day's first and last rows bound a date range's rows for the request log."""

    __tablename__ = "usage_daily"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)  # rows with a status of 400 or more
    cost_nano: Mapped[int] = mapped_column(BigInteger)
    first_usage_id: Mapped[int] = mapped_column(BigInteger)
    last_usage_id: Mapped[int] = mapped_column(BigInteger)


class UsageQuarantine(Base):
    """A usage record the worker could not record (malformed, or naming a key of another account
    or an unknown price version), kept with the reason instead of blocking the records next to it.
    Once per stream entry line. Redis debited its cost when it settled it."""

    __tablename__ = "usage_quarantine"
    __table_args__ = (UniqueConstraint("stream", "entry_id", "line", name="uq_usage_quarantine_stream_entry_id_line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    stream: Mapped[str] = mapped_column(String(100))
    entry_id: Mapped[str] = mapped_column(String(64))
    line: Mapped[int] = mapped_column(Integer)  # 1 for the entry's first record
    record: Mapped[str] = mapped_column(String(1000))  # the packed record, cut to this length
    reason: Mapped[str] = mapped_column(String(500))
    # Read from the record where they can be (None where not).
    request_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[int | None] = mapped_column(Integer)
    cost_nano: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# Top-ups (control_plane/deposits) ---------------------------------------------------------

DEPOSIT_STATUSES = ("seen", "confirmed", "credited", "orphaned", "below_minimum")
DEPOSIT_CHAINS = ("tron", "bsc", "polygon")
ADDRESS_FAMILIES = ("evm", "tron")


class TokenUnits(TypeDecorator):
    """A non-negative integer of token base units, stored as decimal text: 18-decimal tokens
    overflow 64-bit columns at 9.2 tokens, and SQLite's NUMERIC would round them through a float."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if type(value) is not int or value < 0:
            raise ValueError(f"token amounts are non-negative integers of base units, got {value!r}")
        return str(value)

    def process_result_value(self, value, dialect):
        return None if value is None else int(value)


class Deposit(Base):
    """One token transfer to a customer's deposit address, credited at most once per
    (chain, tx hash, log index)."""

    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("chain", "tx_hash", "log_index", name="uq_deposits_chain_tx_hash_log_index"),
        CheckConstraint(_in("status", DEPOSIT_STATUSES), name="status"),
        CheckConstraint(_in("chain", DEPOSIT_CHAINS), name="chain"),
        Index("ix_deposits_account_newest", "account_id", "id"),
        Index("ix_deposits_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chain: Mapped[str] = mapped_column(String(16))
    tx_hash: Mapped[str] = mapped_column(String(100))
    log_index: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    token_contract: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(TokenUnits)
    # amount in nano-USD (1 USDT = 1 USD); sub-nano dust of 18-decimal tokens truncated.
    amount_nano: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="seen")
    # The `deposit` ledger transaction, once credited.
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DepositAddress(Base):
    """The watch-only address of an account on a chain family: child 0/<index> of the family's xpub."""

    __tablename__ = "deposit_addresses"
    __table_args__ = (
        UniqueConstraint("family", "index", name="uq_deposit_addresses_family_index"),
        UniqueConstraint("account_id", "family", name="uq_deposit_addresses_account_id_family"),
        CheckConstraint(_in("family", ADDRESS_FAMILIES), name="family"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    family: Mapped[str] = mapped_column(String(8))
    index: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ChainCursor(Base):
    """Where a chain watcher resumes: every block below `next_block` has been scanned for deposits."""

    __tablename__ = "chain_cursors"
    __table_args__ = (CheckConstraint(_in("chain", DEPOSIT_CHAINS), name="chain"),)

    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_block: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


# The admin console (control_plane/admin) ------------------------------------------------------

class UsageRollup(Base):
    """The gateway's usage per UTC day, model, provider and status, added to with each usage row
    in the same SQL transaction (billing/usage_rollup.py): the admin overview's figures without a
    scan of the usage table, always equal to a GROUP BY of it."""

    __tablename__ = "usage_rollup"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    provider: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_1h_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_nano: Mapped[int] = mapped_column(BigInteger)  # charged to the customers
    provider_cost_nano: Mapped[int] = mapped_column(BigInteger)  # what the providers charge us


class ReconcileRun(Base):
    """One reconciliation (billing/reconcile_runs.py), from the admin console, the admin API or
    the CLI: when, who, and its figures; the overview shows the newest."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))  # the audit log's actor: "admin ops@example.com", "cli root"
    ok: Mapped[bool] = mapped_column(Boolean)
    accounts: Mapped[int] = mapped_column(Integer)
    drifting: Mapped[int] = mapped_column(Integer)  # accounts whose Redis balance drifts
    keys_drifting: Mapped[int] = mapped_column(Integer)
    violations: Mapped[int] = mapped_column(Integer)
    quarantined: Mapped[int] = mapped_column(Integer)
    undrained: Mapped[int] = mapped_column(Integer)  # usage records not drained yet at the snapshot
    drift_nano: Mapped[int] = mapped_column(BigInteger)  # Σ |drift| of the drifting accounts
    overage_nano: Mapped[int] = mapped_column(BigInteger)
    # JSON: what did not hold (the first of the drifting accounts, keys and broken invariants).
    findings: Mapped[str] = mapped_column(Text)


# Statements, invoices, credit policies and alerts (control_plane/billing) -----------------------

INVOICE_KINDS = ("invoice", "credit_note")


class BillingProfile(Base):
    """Who an account's invoices are made out to; copied into each invoice when it is issued."""

    __tablename__ = "billing_profiles"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    legal_name: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(Text, default="")  # lines separated by newlines
    country: Mapped[str] = mapped_column(String(2), default="")  # ISO 3166-1 alpha-2, upper case
    tax_id: Mapped[str] = mapped_column(String(64), default="")  # e.g. a VAT number
    invoice_email: Mapped[str] = mapped_column(String(320), default="")  # "": the account's e-mail
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class InvoiceSeries(Base):
    """The last number given in a series (a rendered prefix such as 'TG-2026-'): numbers are taken
    by incrementing it in the transaction that inserts the invoice, so they are gapless."""

    __tablename__ = "invoice_series"

    prefix: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(Base):
    """An issued invoice (for a credited payment: its `deposit` transaction) or credit note (for
    a refund of one: its `refund` transaction). Immutable: triggers refuse UPDATE and DELETE.
    Parties, rate and lines are copied in at issue time (the tax snapshot)."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("prefix", "sequence", name="uq_invoices_prefix_sequence"),
        CheckConstraint(_in("kind", INVOICE_KINDS), name="kind"),
        Index("ix_invoices_account_newest", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(80), unique=True)  # prefix + sequence, e.g. TG-2026-000042
    prefix: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # The payment's deposit transaction (invoice) or the refund's transaction (credit note).
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    # A credit note's invoice.
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    paid_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the ledger transaction's time
    time_zone: Mapped[str] = mapped_column(String(64))  # the dates on the document are in it
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    # JSON snapshots: {"name", "address", "country", "tax_id", "email"} of the operator and the customer.
    issuer: Mapped[str] = mapped_column(Text)
    customer: Mapped[str] = mapped_column(Text)
    # JSON list of {"kind": "credit"|"discount"|"fee"|"refund", "description", "amount_nano"}: gross
    # (tax-inclusive) amounts that sum to total_nano.
    lines: Mapped[str] = mapped_column(Text)
    tax_rate: Mapped[str] = mapped_column(String(16))  # percent, as text: "19", "7.7", "0"
    reverse_charge: Mapped[bool] = mapped_column(Boolean, default=False)
    net_nano: Mapped[int] = mapped_column(BigInteger)
    tax_nano: Mapped[int] = mapped_column(BigInteger)
    total_nano: Mapped[int] = mapped_column(BigInteger)  # negative on a credit note
    # JSON: {"method": "card"|"usdt", "reference", "chain", "tx_hash", "rate"} (chain, tx hash and
    # the 1 USDT = 1 USD rate for USDT).
    payment: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text, default="")  # the reverse-charge note, for one


class Notice(Base):
    """An alert mail to an account's owner, queued in the transaction that decided it (an outbox:
    the worker sends it after the commit and retries on failure). dedupe_key makes each at most once."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_unsent", "id", postgresql_where=text("sent_at IS NULL"),
                            sqlite_where=text("sent_at IS NULL")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # balance_low, key_limit, deposit_seen, deposit_credited, credit_expiring
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(200), default="")
