// POS terminals and kitchen displays (seed 002): `GET /ws/restaurant-pos/{tenantId}`.
// `submitOrder` gives every order an idempotency key and keeps it in the offline queue until
// the server answers (socket, or `POST /api/orders` while the socket is down, as seed 002's
// client does), so a retry never makes a second order; `updateOrderStatus` bumps an order
// (`PATCH /api/orders/{id}` while down). Keeps a live view of the tenant's orders from
// `sync_state`, `order_created` and `order_status_update`.
import { Connection } from "./connection.js";
import { deliverOrRetry, idempotencyKey, request } from "./http.js";
/** The `error` frame body of the POS, collab and display sockets (fields at the top). */
export function topLevelError(frame) {
    return frame.type === "error" && typeof frame.code === "string" ? frame : undefined;
}
const numberField = (frame, name) => typeof frame[name] === "number" ? frame[name] : undefined;
export class PosConnection extends Connection {
    constructor(options) {
        const tenantId = options.tenantId;
        super({
            path: () => `/ws/restaurant-pos/${encodeURIComponent(tenantId)}`,
            snapshots: true,
            snapshotSeq: (frame) => (frame.type === "sync_state" ? numberField(frame, "seq") : undefined),
            eventSeq: (frame) => numberField(frame, "seq"),
            errorBody: topLevelError,
            ping: () => ({ type: "ping" }),
            answers: (frame, command) => {
                const sent = command.frame;
                if (sent.type === "submit_order") {
                    const order = frame.order;
                    return frame.type === "order_created" && order?.idempotencyKey === sent.idempotencyKey;
                }
                return (frame.type === "order_status_update" && frame.orderId === sent.orderId && frame.status === sent.status);
            },
        }, options);
        /** Active orders (not completed or cancelled) by order id, as kitchen orders. */
        this.activeOrders = new Map();
        /** The tenant's last orders, newest first (as the last `sync_state` and new orders say). */
        this.recentOrders = [];
        /** Orders not answered yet, by idempotency key (what `storage` holds). */
        this.unanswered = new Map();
        this.tenantId = tenantId;
        this.httpFallback = options.httpFallback ?? true;
        this.storage = options.storage;
        this.on("frame", (frame) => this.track(frame));
        for (const [key, order] of this.stored()) {
            // Their callers are gone; the orders still arrive, as `order_created` frames and `change`.
            this.submitOrder(order, { idempotencyKey: key }).catch(() => undefined);
        }
    }
    get storageKey() {
        return `tablewire.pos.${this.tenantId}.unanswered`;
    }
    stored() {
        try {
            const saved = JSON.parse(this.storage?.getItem(this.storageKey) ?? "[]");
            return Array.isArray(saved) ? saved : [];
        }
        catch {
            return [];
        }
    }
    remember(key, order) {
        if (order)
            this.unanswered.set(key, order);
        else
            this.unanswered.delete(key);
        this.storage?.setItem(this.storageKey, JSON.stringify([...this.unanswered]));
    }
    /** Submits an order; resolves once the server has it (one order, however often it is sent). */
    async submitOrder(order, options = {}) {
        const key = options.idempotencyKey ?? idempotencyKey();
        const frame = { type: "submit_order", order, idempotencyKey: key };
        this.remember(key, order);
        const answer = await this.send({
            frame,
            durable: true,
            fallback: this.httpFallback
                ? async () => {
                    const body = await deliverOrRetry(() => request(this, "POST", "/api/orders", { body: { order, idempotencyKey: key }, idempotencyKey: key }));
                    return body === undefined ? undefined : { type: "http", order: body };
                }
                : undefined,
        }).finally(() => this.remember(key, undefined));
        return {
            order: answer.order,
            kitchenOrder: answer.kitchenOrder,
            via: answer.type === "http" ? "http" : "socket",
        };
    }
    /** Moves an order to `status` (kitchen bump). Not queued while offline: HTTP, or it fails. */
    async updateOrderStatus(orderId, status, updatedBy) {
        const frame = { type: "update_order_status", orderId, status };
        if (updatedBy !== undefined)
            frame.updatedBy = updatedBy;
        const answer = await this.send({
            frame,
            durable: false,
            fallback: this.httpFallback
                ? async () => {
                    const body = await deliverOrRetry(() => request(this, "PATCH", `/api/orders/${encodeURIComponent(orderId)}`, {
                        body: { status, updatedBy },
                    }));
                    if (body === undefined)
                        throw new Error("the server is unreachable");
                    return body;
                }
                : undefined,
        });
        return answer;
    }
    track(frame) {
        switch (frame.type) {
            case "sync_state":
                this.activeOrders.clear();
                for (const order of frame.activeOrders)
                    this.activeOrders.set(order.orderId, order);
                this.recentOrders = [...frame.recentOrders];
                break;
            case "order_created":
                if (!this.recentOrders.some((order) => order.id === frame.order.id)) {
                    this.recentOrders = [frame.order, ...this.recentOrders].slice(0, 10);
                }
                this.activeOrders.set(frame.kitchenOrder.orderId, frame.kitchenOrder);
                break;
            case "order_status_update": {
                const order = this.activeOrders.get(frame.orderId);
                if (frame.status === "completed" || frame.status === "cancelled")
                    this.activeOrders.delete(frame.orderId);
                else if (order)
                    this.activeOrders.set(frame.orderId, { ...order, status: frame.status });
                break;
            }
            default:
                return;
        }
        this.emit("change");
    }
}
