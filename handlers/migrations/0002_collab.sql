-- Collaborative orders (seed 001). A finalized order is one row in collab_orders with its items
-- and each participant's share; (tenant_id, order_id) makes a redelivered record a no-op. An
-- expired room is archived as JSON in collab_archives. Runs unchanged on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS collab_orders (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    circle_id TEXT,
    initiated_by TEXT,
    finalized_by TEXT,
    split_type TEXT NOT NULL,
    total BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    finalized_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);

CREATE TABLE IF NOT EXISTS collab_order_items (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    dish_name TEXT NOT NULL,
    dish_type TEXT,
    quantity INTEGER NOT NULL,
    price BIGINT NOT NULL,
    customization TEXT,
    added_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, order_id, item_id)
);

CREATE TABLE IF NOT EXISTS collab_order_splits (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, order_id, participant_id)
);

CREATE TABLE IF NOT EXISTS collab_archives (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL,
    archived_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
