"""Prompt variants: a global prompt is keyed by its name and targets an operation, optionally a
content type and an industry; account customizations may target a content type.

- global_ai_prompts: `slug` (the config name; existing rows get their prompt_type), `prompt_type`
  no longer unique, `content_type` and `industry` (NULL = any), and one prompt per selector
  combination with NULLs equal (a unique index on coalesce expressions);
- ai_prompts: `content_type` (NULL = every content type) and one customization per
  (account, type, content type), NULLs equal.

SQLite rebuilds a table to drop a constraint. Its foreign keys are on, so dropping the old
global_ai_prompts would cascade into global_ai_prompt_versions and trip ai_prompts' reference
(a deferred check does not help: SQLite's counter never sees the rebuilt table's rows). The
version history and the customizations' references are set aside before the rebuild and put
back after it; the rebuilt table keeps every id.

Revision ID: 0002_prompt_variants
Revises: 0001_initial
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_prompt_variants'
down_revision: str | Sequence[str] | None = '0001_initial'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONS_BACKUP = "_cplane_0002_prompt_versions"
REFS_BACKUP = "_cplane_0002_prompt_refs"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _selector_indexes() -> None:
    op.create_index('uq_global_ai_prompts_selectors', 'global_ai_prompts',
                    ['prompt_type', sa.text("coalesce(content_type, '')"), sa.text("coalesce(industry, '')")],
                    unique=True)
    op.create_index('uq_ai_prompts_account_type_content_type', 'ai_prompts',
                    ['account_id', 'prompt_type', sa.text("coalesce(content_type, '')")], unique=True)


def _rebuild_prompts(change) -> None:
    """Run `change(batch)` on global_ai_prompts; on SQLite keep its dependants intact (see above)."""
    if not _sqlite():
        with op.batch_alter_table('global_ai_prompts') as batch:
            change(batch)
        return
    # Nothing may point at the old table when it is dropped: set the references aside first.
    op.execute(f"CREATE TEMP TABLE {VERSIONS_BACKUP} AS SELECT * FROM global_ai_prompt_versions")
    op.execute("DELETE FROM global_ai_prompt_versions")
    op.execute(f"CREATE TEMP TABLE {REFS_BACKUP} AS SELECT id, global_prompt_id FROM ai_prompts "
               "WHERE global_prompt_id IS NOT NULL")
    op.execute("UPDATE ai_prompts SET global_prompt_id = NULL WHERE global_prompt_id IS NOT NULL")
    with op.batch_alter_table('global_ai_prompts', recreate='always') as batch:
        change(batch)
    op.execute(f"INSERT INTO global_ai_prompt_versions SELECT * FROM {VERSIONS_BACKUP} "
               "WHERE prompt_id IN (SELECT id FROM global_ai_prompts)")
    op.execute(f"UPDATE ai_prompts SET global_prompt_id = (SELECT b.global_prompt_id FROM {REFS_BACKUP} b "
               f"WHERE b.id = ai_prompts.id) WHERE id IN (SELECT r.id FROM {REFS_BACKUP} r "
               "JOIN global_ai_prompts g ON g.id = r.global_prompt_id)")
    op.execute(f"DROP TABLE {VERSIONS_BACKUP}")
    op.execute(f"DROP TABLE {REFS_BACKUP}")


def upgrade() -> None:
    op.add_column('global_ai_prompts', sa.Column('slug', sa.String(length=100), nullable=True))
    op.add_column('global_ai_prompts', sa.Column('content_type', sa.String(length=100), nullable=True))
    op.add_column('global_ai_prompts', sa.Column('industry', sa.String(length=100), nullable=True))
    op.execute("UPDATE global_ai_prompts SET slug = prompt_type")

    def change(batch) -> None:
        batch.alter_column('slug', existing_type=sa.String(length=100), nullable=False)
        batch.drop_constraint('uq_global_ai_prompts_prompt_type', type_='unique')
        batch.create_unique_constraint(op.f('uq_global_ai_prompts_slug'), ['slug'])
        batch.create_index(op.f('ix_global_ai_prompts_prompt_type'), ['prompt_type'], unique=False)

    _rebuild_prompts(change)

    op.add_column('ai_prompts', sa.Column('content_type', sa.String(length=100), nullable=True))
    with op.batch_alter_table('ai_prompts') as batch:
        batch.drop_constraint('uq_ai_prompts_account_id_prompt_type', type_='unique')
    _selector_indexes()


def downgrade() -> None:
    # 0001 holds one prompt per type: variants and content-type customizations cannot survive.
    op.drop_index('uq_ai_prompts_account_type_content_type', table_name='ai_prompts')
    op.drop_index('uq_global_ai_prompts_selectors', table_name='global_ai_prompts')
    op.execute("DELETE FROM ai_prompts WHERE content_type IS NOT NULL")
    op.execute("UPDATE ai_prompts SET global_prompt_id = NULL WHERE global_prompt_id IN "
               "(SELECT id FROM global_ai_prompts WHERE content_type IS NOT NULL OR industry IS NOT NULL)")
    op.execute("DELETE FROM global_ai_prompts WHERE content_type IS NOT NULL OR industry IS NOT NULL")
    with op.batch_alter_table('ai_prompts') as batch:
        batch.create_unique_constraint(op.f('uq_ai_prompts_account_id_prompt_type'), ['account_id', 'prompt_type'])
        batch.drop_column('content_type')

    def change(batch) -> None:
        batch.drop_index(op.f('ix_global_ai_prompts_prompt_type'))
        batch.drop_constraint(op.f('uq_global_ai_prompts_slug'), type_='unique')
        batch.create_unique_constraint(op.f('uq_global_ai_prompts_prompt_type'), ['prompt_type'])
        batch.drop_column('industry')
        batch.drop_column('content_type')
        batch.drop_column('slug')

    _rebuild_prompts(change)
