"""Staff commands without the API: `cplane operators`, `cplane accounts list|suspend|activate|keys`,
`cplane payments` (the same functions as `/v1/admin`, runtime/staff.py)."""

from __future__ import annotations

import getpass
import json
import uuid
from contextlib import contextmanager

import click

from control_plane.cli.context import Context, common_options
from control_plane.cli.runtime import accounts
from control_plane.errors import CplaneError


def _actor():
    from runtime.staff import Actor

    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers): still audited as the CLI
        user = "unknown"
    return Actor(label=f"cli:{user}")


@contextmanager
def _session(ctx: Context):
    """A migrated database and one transaction; API errors become one-line CLI errors."""
    from sqlalchemy.orm import Session

    from control_plane.db.engine import ensure_schema
    from runtime.errors import ApiError

    engine = ctx.engine()
    try:
        ensure_schema(engine)
        with Session(engine) as session, session.begin():
            yield session
    except ApiError as exc:
        raise CplaneError(f"{exc.code}: {exc.message}") from None
    finally:
        engine.dispose()


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CplaneError(f"{what} {value!r} is not an id (a UUID)") from None


def _emit(data, fmt: str, columns: tuple[str, ...] = ()) -> None:
    if fmt == "json" or not columns:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        click.echo("  ".join(f"{c}={row.get(c)}" for c in columns))
    if not rows:
        click.echo("(none)")


FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)

# --- operators -----------------------------------------------------------------------------------


@click.group("operators")
def operators():
    """Staff operator keys for /v1/admin."""


@operators.command("create")
@click.option("--name", required=True, help="Who the key is for.")
@click.option("--role", required=True, type=click.Choice(["admin", "finance", "support"]))
@common_options
def operators_create(ctx: Context, name: str, role: str):
    """Create an operator key and print {"operator_id", "name", "role", "operator_key"} (shown once)."""
    from control_plane.db.engine import ensure_schema
    from runtime.errors import ApiError
    from runtime.staff import create_operator

    engine = ctx.engine()
    try:
        ensure_schema(engine)
        result = create_operator(engine, name=name, role=role)
    except ApiError as exc:
        raise CplaneError(exc.message) from None
    finally:
        engine.dispose()
    click.echo(json.dumps(result))


# --- accounts ------------------------------------------------------------------------------------

ACCOUNT_COLUMNS = ("id", "name", "status", "plan", "owner_email", "balance")


@accounts.command("list")
@click.option("--search", help="Substring of the name or owner e-mail.")
@click.option("--status", type=click.Choice(["active", "suspended", "cancelled"]))
@click.option("--plan", help="Plan name.")
@click.option("--email", help="Owner e-mail.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@FORMAT
@common_options
def accounts_list(ctx: Context, search, status, plan, email, limit, fmt):
    """List and search accounts."""
    from runtime.staff import list_accounts

    with _session(ctx) as session:
        items = list_accounts(session, search=search, status=status, plan=plan, email=email, limit=limit)
    _emit(items, fmt, ACCOUNT_COLUMNS)


def _status_command(name: str, status: str, doc: str):
    @accounts.command(name, help=doc)
    @click.argument("account_id")
    @click.option("--reason", default="", help="Recorded in the audit log.")
    @FORMAT
    @common_options
    def command(ctx: Context, account_id: str, reason: str, fmt: str):
        from runtime.staff import set_account_status

        with _session(ctx) as session:
            result = set_account_status(session, _uuid(account_id, "account"), status, _actor(), reason)
        _emit(result, fmt, ACCOUNT_COLUMNS)

    return command


_status_command("suspend", "suspended", "Suspend an account: its tenant routes answer 403 account_suspended.")
_status_command("activate", "active", "Reactivate an account.")


@accounts.group("keys")
def keys():
    """An account's API keys (rotate = create + revoke)."""


KEY_COLUMNS = ("id", "prefix", "name", "active", "created_at", "last_used_at", "revoked_at")


@keys.command("create")
@click.argument("account_id")
@click.option("--name", default="", help="A label for the key.")
@common_options
def keys_create(ctx: Context, account_id: str, name: str):
    """Create a key and print it as JSON (`api_key` is shown once and stored hashed)."""
    from runtime.staff import create_key

    with _session(ctx) as session:
        result = create_key(session, _uuid(account_id, "account"), _actor(), name)
    click.echo(json.dumps(result))


@keys.command("list")
@click.argument("account_id")
@FORMAT
@common_options
def keys_list(ctx: Context, account_id: str, fmt: str):
    """The account's keys (never the keys themselves)."""
    from runtime.staff import list_keys

    with _session(ctx) as session:
        items = list_keys(session, _uuid(account_id, "account"))
    _emit(items, fmt, KEY_COLUMNS)


@keys.command("revoke")
@click.argument("key_id")
@FORMAT
@common_options
def keys_revoke(ctx: Context, key_id: str, fmt: str):
    """Revoke a key: its next request answers 401."""
    from runtime.staff import revoke_key

    with _session(ctx) as session:
        result = revoke_key(session, _uuid(key_id, "API key"), _actor())
    _emit(result, fmt, KEY_COLUMNS)


# --- payments ------------------------------------------------------------------------------------

PAYMENT_COLUMNS = ("id", "account_id", "status", "amount", "currency", "credit_package", "reference",
                   "approved_by", "approved_at")


@click.group("payments")
def payments():
    """The manual-payment workflow (bank transfers)."""


@payments.command("list")
@click.option("--status", type=click.Choice(["pending", "completed", "failed"]))
@click.option("--account", "account_id", help="Only this account's payments.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@FORMAT
@common_options
def payments_list(ctx: Context, status, account_id, limit, fmt):
    """List payments."""
    from runtime.staff import list_payments

    with _session(ctx) as session:
        items = list_payments(session, status=status, limit=limit,
                              account_id=_uuid(account_id, "account") if account_id else None)
    _emit(items, fmt, PAYMENT_COLUMNS)


@payments.command("approve")
@click.argument("payment_id")
@FORMAT
@common_options
def payments_approve(ctx: Context, payment_id: str, fmt: str):
    """Approve a pending payment (credits, ledger, invoice paid, activation, notification); idempotent."""
    from runtime.staff import approve_payment

    with _session(ctx) as session:
        result = approve_payment(session, _uuid(payment_id, "payment"), _actor())
    _emit(result, fmt, (*PAYMENT_COLUMNS, "credits_added"))


@payments.command("reject")
@click.argument("payment_id")
@click.option("--reason", required=True, help="Why (recorded on the payment and in the audit log).")
@FORMAT
@common_options
def payments_reject(ctx: Context, payment_id: str, reason: str, fmt: str):
    """Reject a pending payment: `failed` with the reason, no credits."""
    from runtime.staff import reject_payment

    with _session(ctx) as session:
        result = reject_payment(session, _uuid(payment_id, "payment"), reason, _actor())
    _emit(result, fmt, (*PAYMENT_COLUMNS, "failure_reason"))
