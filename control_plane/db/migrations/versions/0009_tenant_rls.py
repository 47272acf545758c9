"""Tenant isolation enforced by PostgreSQL, and users unique per account.

- PostgreSQL: role cplane_runtime, row-level security (forced) on every tenant table, triggers
  refusing cross-tenant references and account_id changes (control_plane/db/tenancy.py says what
  and why). SQLite has no roles or policies: nothing to do there.
- users.email is unique per account (account_id, email) instead of across the database, so that
  adding a user never tells one tenant that another tenant has the address.

Revision ID: 0009_tenant_rls
Revises: 0008_change_counters
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from control_plane.db import tenancy
from control_plane.db.tenancy import TenantTable as T

revision: str = '0009_tenant_rls'
down_revision: str | Sequence[str] | None = '0008_change_counters'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: the tenant tables (classes user and mixed of config/cleanup/manifest.yaml), how each
# reaches its account, and its references to other tenant tables. A later revision that adds a
# tenant table protects it itself (tenancy.protect).
TABLES = (
    T('account_payment_methods'),
    T('accounts', account='id', refs=(('owner_id', 'users'),)),
    T('admin_log_entries', account=None, refs=(('user_id', 'users'),)),
    T('ai_integration_settings', mixed=True),
    T('ai_prompts'),
    T('ai_task_logs', refs=(('site_id', 'sites'),)),
    T('api_keys', refs=(('user_id', 'users'),)),
    T('audit_logs', refs=(('user_id', 'users'),)),
    T('author_profiles'),
    T('automation_configs', refs=(('site_id', 'sites'),)),
    T('automation_runs', refs=(('config_id', 'automation_configs'), ('site_id', 'sites'), ('started_by_id', 'users'))),
    T('clusters', refs=(('created_by_id', 'users'), ('sector_id', 'sectors'), ('site_id', 'sites'))),
    T('content', refs=(('created_by_id', 'users'), ('sector_id', 'sectors'), ('site_id', 'sites'), ('task_id', 'tasks'))),
    T('content_attributes', account=None, refs=(('content_id', 'content'),)),
    T('content_cluster_maps', account=None, refs=(('content_id', 'content'), ('cluster_id', 'clusters'))),
    T('content_idea_keywords', account=None, refs=(('idea_id', 'content_ideas'), ('keyword_id', 'keywords'))),
    T('content_ideas', refs=(('cluster_id', 'clusters'), ('primary_keyword_id', 'keywords'), ('sector_id', 'sectors'),
                             ('site_id', 'sites'))),
    T('content_images', refs=(('content_id', 'content'),)),
    T('content_taxonomies', refs=(('parent_id', 'content_taxonomies'), ('site_id', 'sites'))),
    T('content_taxonomy_relations', account=None, refs=(('content_id', 'content'), ('taxonomy_id', 'content_taxonomies'))),
    T('credit_balances'),
    T('credit_transactions'),
    T('credit_usage_logs', refs=(('site_id', 'sites'), ('transaction_id', 'credit_transactions'), ('user_id', 'users'))),
    T('deployment_records', refs=(('site_id', 'sites'),)),
    T('group_results', account=None),
    T('invoices', refs=(('subscription_id', 'subscriptions'),)),
    T('keywords', refs=(('cluster_id', 'clusters'), ('created_by_id', 'users'), ('sector_id', 'sectors'),
                        ('seed_keyword_id', 'seed_keywords'), ('site_id', 'sites'))),
    T('module_enable_settings'),
    T('notification_outbox'),
    T('password_reset_tokens', account=None, refs=(('user_id', 'users'),)),
    T('payments', refs=(('invoice_id', 'invoices'),)),
    T('plan_limit_usage'),
    T('publishing_records', refs=(('content_id', 'content'), ('integration_id', 'site_integrations'))),
    T('sectors', refs=(('site_id', 'sites'),)),
    T('seed_keywords', mixed=True),
    T('sessions', account=None, refs=(('user_id', 'users'),)),
    T('site_integrations', refs=(('site_id', 'sites'),)),
    T('site_user_access', account=None, refs=(('site_id', 'sites'), ('user_id', 'users'))),
    T('sites'),
    T('strategies'),
    T('subscriptions'),
    T('sync_events', refs=(('integration_id', 'site_integrations'),)),
    T('task_results', account=None),
    T('tasks', refs=(('assigned_to_id', 'users'), ('author_profile_id', 'author_profiles'), ('created_by_id', 'users'),
                     ('idea_id', 'content_ideas'), ('sector_id', 'sectors'), ('site_id', 'sites'),
                     ('strategy_id', 'strategies'))),
    T('users'),
    T('webhook_configs'),
)


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint('uq_users_email', type_='unique')
        batch.create_unique_constraint(op.f('uq_users_account_id_email'), ['account_id', 'email'])
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        tenancy.install(bind, TABLES)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        tenancy.uninstall(bind, TABLES)
    with op.batch_alter_table('users') as batch:
        batch.drop_constraint('uq_users_account_id_email', type_='unique')
        batch.create_unique_constraint(op.f('uq_users_email'), ['email'])
