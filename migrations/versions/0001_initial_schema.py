"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:24:26.361139
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('changes',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('txid', sa.BigInteger(), server_default=sa.text('(pg_current_xact_id()::text)::bigint'), nullable=False),
    sa.Column('collection', sa.Text(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'seq', name=op.f('pk_changes'))
    )
    op.create_index('ix_changes_org_id_txid_seq', 'changes', ['org_id', 'txid', 'seq'], unique=False)
    op.create_table('external_ids',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('collection', sa.Text(), nullable=False),
    sa.Column('system', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'collection', 'system', 'value', name=op.f('pk_external_ids'))
    )
    op.create_index('ix_external_ids_org_id_record_id', 'external_ids', ['org_id', 'record_id'], unique=False)
    op.create_table('history',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('collection', sa.Text(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=True),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('changed_by', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'collection', 'record_id', 'version', name=op.f('pk_history'))
    )
    op.create_table('organizations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations'))
    )
    op.create_table('signing_keys',
    sa.Column('kid', sa.Text(), nullable=False),
    sa.Column('alg', sa.Text(), nullable=False),
    sa.Column('private_jwk', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_keys'))
    )
    op.create_table('apps',
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=True),
    sa.Column('scopes', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('patient_id', sa.Uuid(), nullable=True),
    sa.Column('jwks', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('jwks_url', sa.Text(), nullable=True),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_apps_org_id_organizations')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_apps'))
    )
    op.create_index('uq_apps_client_id', 'apps', ['client_id'], unique=True)
    op.create_table('clients',
    sa.Column('display_name', sa.Text(), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('preferred_language', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('preferred_future', sa.Text(), nullable=True),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("status IN ('active', 'paused', 'discharged')", name=op.f('ck_clients_status_enum')),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_clients_org_id_organizations')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_clients'))
    )
    op.create_table('exceptions',
    sa.Column('problem', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('conditions', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('strength_ids', postgresql.ARRAY(sa.Uuid()), nullable=False),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_exceptions_org_id_client_id_clients')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_exceptions'))
    )
    op.create_index('ix_exceptions_org_id_client_id', 'exceptions', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_exceptions_strength_ids', 'exceptions', ['strength_ids'], unique=False, postgresql_using='gin')
    op.create_table('goals',
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('strength_ids', postgresql.ARRAY(sa.Uuid()), nullable=False),
    sa.Column('target', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('lifecycle', sa.Text(), nullable=False),
    sa.Column('achievement', sa.Text(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=True),
    sa.Column('target_date', sa.Date(), nullable=True),
    sa.Column('barriers', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("achievement IN ('in_progress', 'improving', 'worsening', 'no_change', 'achieved', 'not_achieved')", name=op.f('ck_goals_achievement_enum')),
    sa.CheckConstraint("lifecycle IN ('proposed', 'active', 'on_hold', 'completed', 'cancelled')", name=op.f('ck_goals_lifecycle_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_goals_org_id_client_id_clients')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_goals'))
    )
    op.create_index('ix_goals_org_id_client_id', 'goals', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_goals_strength_ids', 'goals', ['strength_ids'], unique=False, postgresql_using='gin')
    op.create_table('protective_factors',
    sa.Column('category', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("category IN ('relationship', 'routine', 'belief', 'responsibility', 'housing', 'healthcare_access', 'social_support', 'cultural', 'spiritual', 'other')", name=op.f('ck_protective_factors_category_enum')),
    sa.CheckConstraint("status IN ('present', 'at_risk', 'lost')", name=op.f('ck_protective_factors_status_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_protective_factors_org_id_client_id_clients')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_protective_factors'))
    )
    op.create_index('ix_protective_factors_org_id_client_id', 'protective_factors', ['org_id', 'client_id'], unique=False)
    op.create_table('strengths',
    sa.Column('domain', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('client_label', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('context', sa.Text(), nullable=True),
    sa.Column('under_stress', sa.Boolean(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('evidence', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("domain IN ('personal', 'relational', 'community', 'cultural', 'spiritual', 'practical')", name=op.f('ck_strengths_domain_enum')),
    sa.CheckConstraint("kind IN ('skill', 'value', 'character', 'external_support')", name=op.f('ck_strengths_kind_enum')),
    sa.CheckConstraint("source IN ('client_report', 'clinician_observation', 'via_inventory', 'cliftonstrengths', 'other_instrument', 'collateral')", name=op.f('ck_strengths_source_enum')),
    sa.CheckConstraint("status IN ('hypothesis', 'confirmed', 'retired')", name=op.f('ck_strengths_status_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_strengths_org_id_client_id_clients')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_strengths'))
    )
    op.create_index('ix_strengths_org_id_client_id', 'strengths', ['org_id', 'client_id'], unique=False)
    op.create_table('experiments',
    sa.Column('strength_id', sa.Uuid(), nullable=False),
    sa.Column('goal_id', sa.Uuid(), nullable=True),
    sa.Column('plan', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('confidence_before', sa.SmallInteger(), nullable=True),
    sa.Column('confidence_after', sa.SmallInteger(), nullable=True),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('debrief', sa.Text(), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("status IN ('planned', 'done', 'not_done')", name=op.f('ck_experiments_status_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_experiments_org_id_client_id_clients')),
    sa.ForeignKeyConstraint(['org_id', 'goal_id'], ['goals.org_id', 'goals.id'], name=op.f('fk_experiments_org_id_goal_id_goals')),
    sa.ForeignKeyConstraint(['org_id', 'strength_id'], ['strengths.org_id', 'strengths.id'], name=op.f('fk_experiments_org_id_strength_id_strengths')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_experiments'))
    )
    op.create_index('ix_experiments_org_id_client_id', 'experiments', ['org_id', 'client_id'], unique=False)
    op.create_table('milestones',
    sa.Column('goal_id', sa.Uuid(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('completion_criteria', sa.Text(), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("status IN ('planned', 'in_progress', 'done', 'skipped')", name=op.f('ck_milestones_status_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_milestones_org_id_client_id_clients')),
    sa.ForeignKeyConstraint(['org_id', 'goal_id'], ['goals.org_id', 'goals.id'], name=op.f('fk_milestones_org_id_goal_id_goals')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_milestones'))
    )
    op.create_index('ix_milestones_org_id_client_id', 'milestones', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_milestones_org_id_goal_id', 'milestones', ['org_id', 'goal_id'], unique=False)
    op.create_table('outcome_markers',
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=True),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('instrument', sa.Text(), nullable=True),
    sa.Column('min', sa.Float(), nullable=True),
    sa.Column('max', sa.Float(), nullable=True),
    sa.Column('direction', sa.Text(), nullable=False),
    sa.Column('goal_id', sa.Uuid(), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("direction IN ('higher_is_better', 'lower_is_better')", name=op.f('ck_outcome_markers_direction_enum')),
    sa.CheckConstraint("instrument IS NULL OR instrument IN ('phq9', 'gad7')", name=op.f('ck_outcome_markers_instrument_enum')),
    sa.CheckConstraint("kind IN ('frequency', 'duration', 'confidence', 'recovery_time', 'instrument', 'mood', 'custom')", name=op.f('ck_outcome_markers_kind_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_outcome_markers_org_id_client_id_clients')),
    sa.ForeignKeyConstraint(['org_id', 'goal_id'], ['goals.org_id', 'goals.id'], name=op.f('fk_outcome_markers_org_id_goal_id_goals')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_outcome_markers'))
    )
    op.create_index('ix_outcome_markers_org_id_client_id', 'outcome_markers', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_outcome_markers_org_id_goal_id', 'outcome_markers', ['org_id', 'goal_id'], unique=False)
    op.create_table('strength_uses',
    sa.Column('strength_id', sa.Uuid(), nullable=False),
    sa.Column('situation', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('rating', sa.SmallInteger(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_strength_uses_org_id_client_id_clients')),
    sa.ForeignKeyConstraint(['org_id', 'strength_id'], ['strengths.org_id', 'strengths.id'], name=op.f('fk_strength_uses_org_id_strength_id_strengths')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_strength_uses'))
    )
    op.create_index('ix_strength_uses_org_id_client_id', 'strength_uses', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_strength_uses_org_id_strength_id', 'strength_uses', ['org_id', 'strength_id'], unique=False)
    op.create_table('measurements',
    sa.Column('marker_id', sa.Uuid(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('items', postgresql.ARRAY(sa.SmallInteger()), nullable=True),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('observed_offset', sa.SmallInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('external_id', sa.Text(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_measurements_org_id_client_id_clients')),
    sa.ForeignKeyConstraint(['org_id', 'marker_id'], ['outcome_markers.org_id', 'outcome_markers.id'], name=op.f('fk_measurements_org_id_marker_id_outcome_markers')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_measurements'))
    )
    op.create_index('ix_measurements_org_id_client_id', 'measurements', ['org_id', 'client_id'], unique=False)
    op.create_index('ix_measurements_org_id_marker_id_observed_at', 'measurements', ['org_id', 'marker_id', 'observed_at'], unique=False)
    op.create_index('uq_measurements_org_id_source_external_id', 'measurements', ['org_id', 'source', 'external_id'], unique=True, postgresql_where=sa.text('external_id IS NOT NULL'))
    op.create_table('safety_alerts',
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('measurement_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Text(), nullable=True),
    sa.Column('client_id', sa.Uuid(), nullable=False),
    sa.Column('org_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('external_ids', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name=op.f('ck_safety_alerts_status_enum')),
    sa.ForeignKeyConstraint(['org_id', 'client_id'], ['clients.org_id', 'clients.id'], name=op.f('fk_safety_alerts_org_id_client_id_clients')),
    sa.ForeignKeyConstraint(['org_id', 'measurement_id'], ['measurements.org_id', 'measurements.id'], name=op.f('fk_safety_alerts_org_id_measurement_id_measurements')),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_safety_alerts'))
    )
    op.create_index('ix_safety_alerts_org_id_client_id_status', 'safety_alerts', ['org_id', 'client_id', 'status'], unique=False)
    op.create_index('uq_safety_alerts_org_id_measurement_id', 'safety_alerts', ['org_id', 'measurement_id'], unique=True, postgresql_where=sa.text('measurement_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_safety_alerts_org_id_measurement_id', table_name='safety_alerts', postgresql_where=sa.text('measurement_id IS NOT NULL'))
    op.drop_index('ix_safety_alerts_org_id_client_id_status', table_name='safety_alerts')
    op.drop_table('safety_alerts')
    op.drop_index('uq_measurements_org_id_source_external_id', table_name='measurements', postgresql_where=sa.text('external_id IS NOT NULL'))
    op.drop_index('ix_measurements_org_id_marker_id_observed_at', table_name='measurements')
    op.drop_index('ix_measurements_org_id_client_id', table_name='measurements')
    op.drop_table('measurements')
    op.drop_index('ix_strength_uses_org_id_strength_id', table_name='strength_uses')
    op.drop_index('ix_strength_uses_org_id_client_id', table_name='strength_uses')
    op.drop_table('strength_uses')
    op.drop_index('ix_outcome_markers_org_id_goal_id', table_name='outcome_markers')
    op.drop_index('ix_outcome_markers_org_id_client_id', table_name='outcome_markers')
    op.drop_table('outcome_markers')
    op.drop_index('ix_milestones_org_id_goal_id', table_name='milestones')
    op.drop_index('ix_milestones_org_id_client_id', table_name='milestones')
    op.drop_table('milestones')
    op.drop_index('ix_experiments_org_id_client_id', table_name='experiments')
    op.drop_table('experiments')
    op.drop_index('ix_strengths_org_id_client_id', table_name='strengths')
    op.drop_table('strengths')
    op.drop_index('ix_protective_factors_org_id_client_id', table_name='protective_factors')
    op.drop_table('protective_factors')
    op.drop_index('ix_goals_strength_ids', table_name='goals', postgresql_using='gin')
    op.drop_index('ix_goals_org_id_client_id', table_name='goals')
    op.drop_table('goals')
    op.drop_index('ix_exceptions_strength_ids', table_name='exceptions', postgresql_using='gin')
    op.drop_index('ix_exceptions_org_id_client_id', table_name='exceptions')
    op.drop_table('exceptions')
    op.drop_table('clients')
    op.drop_index('uq_apps_client_id', table_name='apps')
    op.drop_table('apps')
    op.drop_table('signing_keys')
    op.drop_table('organizations')
    op.drop_table('history')
    op.drop_index('ix_external_ids_org_id_record_id', table_name='external_ids')
    op.drop_table('external_ids')
    op.drop_index('ix_changes_org_id_txid_seq', table_name='changes')
    op.drop_table('changes')
