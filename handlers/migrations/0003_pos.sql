-- POS orders (seed 002): one row per order, keyed by tenant and order id, with a unique order
-- number per tenant; the status history one row per change, keyed by the record id. Writing a
-- record twice changes nothing. Runs unchanged on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS pos_orders (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    order_number TEXT NOT NULL,
    order_type TEXT NOT NULL,
    status TEXT NOT NULL,
    idempotency_key TEXT,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS pos_orders_number ON pos_orders (tenant_id, order_number);

CREATE TABLE IF NOT EXISTS pos_order_status (
    record_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    previous_status TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS pos_order_status_order ON pos_order_status (tenant_id, order_id);
