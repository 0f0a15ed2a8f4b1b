// POS terminals and kitchen displays (seed 002): `GET /ws/restaurant-pos/{tenantId}`.
// `submitOrder` gives every order an idempotency key and keeps it in the offline queue until
// the server answers (socket, or `POST /api/orders` while the socket is down, as seed 002's
// client does), so a retry never makes a second order; `updateOrderStatus` bumps an order
// (`PATCH /api/orders/{id}` while down). Keeps a live view of the tenant's orders from
// `sync_state`, `order_created` and `order_status_update`.

import { Connection, type ConnectionOptions, type Frame } from "./connection.js";
import { deliverOrRetry, idempotencyKey, request } from "./http.js";
import type { ErrorBody } from "./errors.js";
import type { OrderInput } from "./generated/pos.client.js";
import type { KitchenOrder, Order, ServerFrame } from "./generated/pos.server.js";

export type { OrderInput, KitchenOrder, Order };
export type OrderStatus = "pending" | "preparing" | "ready" | "completed" | "cancelled";
export type PosFrame = ServerFrame & { seq?: number };

export interface PosOptions extends ConnectionOptions {
  tenantId: string;
  /** Use `POST /api/orders` and `PATCH /api/orders/{id}` while the socket is down (default true). */
  httpFallback?: boolean;
  /** Keeps unanswered orders here (e.g. `localStorage`), so a reload while offline loses none:
   * a new connection with the same storage and tenant sends them again, with their keys. */
  storage?: OrderStorage;
}

/** The part of the Web Storage API the POS needs. */
export interface OrderStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface SubmitResult {
  order: Order;
  kitchenOrder?: KitchenOrder;
  /** How the order reached the server. */
  via: "socket" | "http";
}

export interface StatusResult {
  orderId: string;
  orderNumber: string;
  status: OrderStatus;
  updatedBy: string;
}

/** The `error` frame body of the POS, collab and display sockets (fields at the top). */
export function topLevelError(frame: Frame): ErrorBody | undefined {
  return frame.type === "error" && typeof frame.code === "string" ? (frame as unknown as ErrorBody) : undefined;
}

const numberField = (frame: Frame, name: string): number | undefined =>
  typeof frame[name] === "number" ? (frame[name] as number) : undefined;

export class PosConnection extends Connection {
  readonly tenantId: string;
  private readonly httpFallback: boolean;
  /** Active orders (not completed or cancelled) by order id, as kitchen orders. */
  readonly activeOrders = new Map<string, KitchenOrder>();
  /** The tenant's last orders, newest first (as the last `sync_state` and new orders say). */
  recentOrders: Order[] = [];
  private readonly storage: OrderStorage | undefined;
  /** Orders not answered yet, by idempotency key (what `storage` holds). */
  private readonly unanswered = new Map<string, OrderInput>();

  constructor(options: PosOptions) {
    const tenantId = options.tenantId;
    super(
      {
        path: () => `/ws/restaurant-pos/${encodeURIComponent(tenantId)}`,
        snapshots: true,
        snapshotSeq: (frame) => (frame.type === "sync_state" ? numberField(frame, "seq") : undefined),
        eventSeq: (frame) => numberField(frame, "seq"),
        errorBody: topLevelError,
        ping: () => ({ type: "ping" }),
        answers: (frame, command) => {
          const sent = command.frame;
          if (sent.type === "submit_order") {
            const order = frame.order as { idempotencyKey?: unknown } | undefined;
            return frame.type === "order_created" && order?.idempotencyKey === sent.idempotencyKey;
          }
          return (
            frame.type === "order_status_update" && frame.orderId === sent.orderId && frame.status === sent.status
          );
        },
      },
      options,
    );
    this.tenantId = tenantId;
    this.httpFallback = options.httpFallback ?? true;
    this.storage = options.storage;
    this.on("frame", (frame) => this.track(frame as PosFrame));
    for (const [key, order] of this.stored()) {
      // Their callers are gone; the orders still arrive, as `order_created` frames and `change`.
      this.submitOrder(order, { idempotencyKey: key }).catch(() => undefined);
    }
  }

  private get storageKey(): string {
    return `tablewire.pos.${this.tenantId}.unanswered`;
  }

  private stored(): [string, OrderInput][] {
    try {
      const saved = JSON.parse(this.storage?.getItem(this.storageKey) ?? "[]");
      return Array.isArray(saved) ? saved : [];
    } catch {
      return [];
    }
  }

  private remember(key: string, order: OrderInput | undefined): void {
    if (order) this.unanswered.set(key, order);
    else this.unanswered.delete(key);
    this.storage?.setItem(this.storageKey, JSON.stringify([...this.unanswered]));
  }

  /** Submits an order; resolves once the server has it (one order, however often it is sent). */
  async submitOrder(order: OrderInput, options: { idempotencyKey?: string } = {}): Promise<SubmitResult> {
    const key = options.idempotencyKey ?? idempotencyKey();
    const frame = { type: "submit_order", order, idempotencyKey: key };
    this.remember(key, order);
    const answer = await this.send<Frame>({
      frame,
      durable: true,
      fallback: this.httpFallback
        ? async () => {
            const body = await deliverOrRetry(() =>
              request(this, "POST", "/api/orders", { body: { order, idempotencyKey: key }, idempotencyKey: key }),
            );
            return body === undefined ? undefined : { type: "http", order: body };
          }
        : undefined,
    }).finally(() => this.remember(key, undefined));
    return {
      order: answer.order as Order,
      kitchenOrder: answer.kitchenOrder as KitchenOrder | undefined,
      via: answer.type === "http" ? "http" : "socket",
    };
  }

  /** Moves an order to `status` (kitchen bump). Not queued while offline: HTTP, or it fails. */
  async updateOrderStatus(orderId: string, status: OrderStatus, updatedBy?: string): Promise<StatusResult> {
    const frame: Frame = { type: "update_order_status", orderId, status };
    if (updatedBy !== undefined) frame.updatedBy = updatedBy;
    const answer = await this.send<Frame>({
      frame,
      durable: false,
      fallback: this.httpFallback
        ? async () => {
            const body = await deliverOrRetry(() =>
              request(this, "PATCH", `/api/orders/${encodeURIComponent(orderId)}`, {
                body: { status, updatedBy },
              }),
            );
            if (body === undefined) throw new Error("the server is unreachable");
            return body;
          }
        : undefined,
    });
    return answer as unknown as StatusResult;
  }

  private track(frame: PosFrame): void {
    switch (frame.type) {
      case "sync_state":
        this.activeOrders.clear();
        for (const order of frame.activeOrders) this.activeOrders.set(order.orderId, order);
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
        if (frame.status === "completed" || frame.status === "cancelled") this.activeOrders.delete(frame.orderId);
        else if (order) this.activeOrders.set(frame.orderId, { ...order, status: frame.status });
        break;
      }
      default:
        return;
    }
    this.emit("change");
  }
}
