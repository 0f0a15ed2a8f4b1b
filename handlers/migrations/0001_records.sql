-- Every record any domain produced, as JSON; the id makes writing it twice a no-op.
-- Runs unchanged on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    data TEXT NOT NULL,
    stored_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_kind_tenant ON records (kind, tenant);

-- Display sessions (seed 000), one row per session; `version` is the input stream sequence of
-- the command that wrote it, so an old record delivered late never overwrites a newer one.
CREATE TABLE IF NOT EXISTS display_sessions (
    session_id TEXT PRIMARY KEY,
    tenant_id TEXT,
    started_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);
