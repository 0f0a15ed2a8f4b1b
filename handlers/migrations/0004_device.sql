-- Seed 003 (RFID readers). Runs unchanged on SQLite and PostgreSQL.

-- The tag directory: who each tag belongs to. `user_data` is the JSON object scan replies show
-- as `user` (at least `{"id": …}`); a tag registered in registration mode has no user yet.
-- The records writer copies rows changed since its last look (by `updated_at`) into the KV
-- bucket `tw_device_tags`, where edges look tags up.
CREATE TABLE IF NOT EXISTS device_tags (
    tenant TEXT NOT NULL,
    tag_id TEXT NOT NULL,
    user_id TEXT,
    user_data TEXT,
    registered_by TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, tag_id)
);
CREATE INDEX IF NOT EXISTS device_tags_updated ON device_tags (updated_at);

-- Every accepted scan; `id` is `{deviceId}:{input stream sequence}`, so writing one twice is a
-- no-op.
CREATE TABLE IF NOT EXISTS device_scans (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    device_id TEXT NOT NULL,
    tag_id TEXT NOT NULL,
    location TEXT,
    user_id TEXT,
    registered BOOLEAN NOT NULL,
    scanned_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_scans_device ON device_scans (tenant, device_id, scanned_at);

-- Each device's configuration as last stored by `PUT /api/devices/{id}/config`; `version` is
-- the input stream sequence, so an older record delivered late never overwrites a newer one.
CREATE TABLE IF NOT EXISTS device_configs (
    tenant TEXT NOT NULL,
    device_id TEXT NOT NULL,
    config TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, device_id)
);
