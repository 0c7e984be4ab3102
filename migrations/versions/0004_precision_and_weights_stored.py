"""runs stored before --precision get precision fp32 in their config and a config hash of the current rule;
Hessian reports stored before --weights get weights final

Until this revision the config hash left precision out of its body while it held fp32 (the value of every
run stored before the option existed), so that those runs kept their hash; and readers took a missing
precision for fp32 and a report's missing weights for final. Now the stored rows say so themselves and
the hash is taken over the whole body.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:30:00
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# The hash rule as of this revision (config.TrainConfig.config_hash), frozen here so that the migration
# does not change when the code does: these fields are left out of the hashed body.
LEFT_OUT = ("seed", "hessian_every", "hessian_density", "eval_noise", "track_saddles", "saddle_every",
            "saddle_top_n", "max_saddles", "probe_batches", "probe_size", "probe_mode",
            "download", "device", "cache_dir", "probe_micro_batch", "checkpoint_every", "arm")
EARLIER_PRECISION = "fp32"  # every run stored before --precision trained in float32

runs = sa.table('runs', sa.column('id', sa.String), sa.column('config', sa.JSON), sa.column('config_hash', sa.String))
reports = sa.table('hessian_reports', sa.column('id', sa.Integer), sa.column('config', sa.JSON))


def config_hash(config: dict, precision_hashed: bool) -> str:
    """The hash of a stored config: the body without LEFT_OUT, and before this revision (not
    `precision_hashed`) without precision either while it held fp32."""
    body = {k: v for k, v in config.items() if k not in LEFT_OUT
            and (precision_hashed or not (k == "precision" and v == EARLIER_PRECISION))}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _rehash(conn, precision_hashed: bool) -> None:
    """Each run whose stored hash is the other rule's hash of its config gets this rule's. A run whose hash
    is neither (stored under a still earlier rule, so no current config could match it) is left as it is."""
    for run_id, config, stored in conn.execute(sa.select(runs.c.id, runs.c.config, runs.c.config_hash)).all():
        if not isinstance(config, dict):
            continue
        if precision_hashed and "precision" not in config:
            config = config | {"precision": EARLIER_PRECISION}
            conn.execute(runs.update().where(runs.c.id == run_id).values(config=config))
        if stored == config_hash(config, not precision_hashed):
            conn.execute(runs.update().where(runs.c.id == run_id)
                         .values(config_hash=config_hash(config, precision_hashed)))


def upgrade() -> None:
    conn = op.get_bind()
    _rehash(conn, precision_hashed=True)
    for report_id, config in conn.execute(sa.select(reports.c.id, reports.c.config)).all():
        if isinstance(config, dict) and "weights" not in config:  # made before --weights: on the final weights
            conn.execute(reports.update().where(reports.c.id == report_id).values(config=config | {"weights": "final"}))


def downgrade() -> None:
    # the precision and weights keys stay: the earlier code read them when present
    _rehash(op.get_bind(), precision_hashed=False)
