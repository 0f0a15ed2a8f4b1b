// Generated from schemas/json/pos.server.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * Server → client frames on `/ws/restaurant-pos/{tenantId}`.
 */
export type ServerFrame =
  | {
      kitchenOrder: KitchenOrder;
      order: Order;
      type: "order_created";
    }
  | {
      /**
       * The order's id.
       */
      orderId: string;
      /**
       * The order's number.
       */
      orderNumber: string;
      /**
       * The new status.
       */
      status: "pending" | "preparing" | "ready" | "completed" | "cancelled";
      type: "order_status_update";
      /**
       * Who changed it.
       */
      updatedBy: string;
    }
  | {
      /**
       * Every order not completed or cancelled, as kitchen orders.
       */
      activeOrders: KitchenOrder1[];
      /**
       * The tenant's last 10 orders, newest first.
       */
      recentOrders: Order1[];
      /**
       * The event sequence this state includes.
       */
      seq: number;
      type: "sync_state";
    }
  | {
      /**
       * The catalogue name, e.g. `VALIDATION_ERROR`.
       */
      code:
        | "MALFORMED_JSON"
        | "UNKNOWN_TYPE"
        | "INVALID_MESSAGE"
        | "VALIDATION_ERROR"
        | "MESSAGE_TOO_BIG"
        | "INVALID_UTF8"
        | "NOT_FOUND"
        | "METHOD_NOT_ALLOWED"
        | "INVALID_ID"
        | "UPGRADE_REQUIRED"
        | "PROTOCOL_ERROR"
        | "UNAUTHORIZED"
        | "TOKEN_EXPIRED"
        | "FORBIDDEN"
        | "TENANT_MISMATCH"
        | "AUTH_TIMEOUT"
        | "TENANT_CLAIMS_DISAGREE"
        | "TOKEN_NOT_YET_VALID"
        | "RATE_LIMITED"
        | "SLOW_CONSUMER"
        | "TOO_MANY_SUBSCRIPTIONS"
        | "TOO_SOON"
        | "STATE_FULL"
        | "TOO_MANY_CONNECTIONS"
        | "UNKNOWN_RESOURCE"
        | "CONFLICT"
        | "COMMAND_PARKED"
        | "INTERNAL"
        | "UNAVAILABLE"
        | "TIMEOUT"
        | "DRAINING"
        | "EVENTS_MISSED"
        | "TRANSCRIBER_UNAVAILABLE";
      /**
       * The finer catalogue code, where an endpoint's seed answers with a coarser one in `code`
       * (seed 004's sockets say `INVALID_MESSAGE` for malformed JSON and unknown types alike).
       */
      detail?: ErrorCode | null;
      /**
       * The catalogue number, e.g. `1003`.
       */
      errorCode: number;
      /**
       * What went wrong, for people.
       */
      message: string;
      /**
       * When set, how long to wait before retrying.
       */
      retryAfterMs?: number | null;
      /**
       * Whether the same request may succeed later.
       */
      retryable: boolean;
      /**
       * ms since the Unix epoch.
       */
      timestamp: number;
      type: "error";
    }
  | {
      /**
       * ms since the Unix epoch.
       */
      timestamp: number;
      type: "pong";
    };
/**
 * One entry of the error catalogue.
 */
export type ErrorCode =
  | "MALFORMED_JSON"
  | "UNKNOWN_TYPE"
  | "INVALID_MESSAGE"
  | "VALIDATION_ERROR"
  | "MESSAGE_TOO_BIG"
  | "INVALID_UTF8"
  | "NOT_FOUND"
  | "METHOD_NOT_ALLOWED"
  | "INVALID_ID"
  | "UPGRADE_REQUIRED"
  | "PROTOCOL_ERROR"
  | "UNAUTHORIZED"
  | "TOKEN_EXPIRED"
  | "FORBIDDEN"
  | "TENANT_MISMATCH"
  | "AUTH_TIMEOUT"
  | "TENANT_CLAIMS_DISAGREE"
  | "TOKEN_NOT_YET_VALID"
  | "RATE_LIMITED"
  | "SLOW_CONSUMER"
  | "TOO_MANY_SUBSCRIPTIONS"
  | "TOO_SOON"
  | "STATE_FULL"
  | "TOO_MANY_CONNECTIONS"
  | "UNKNOWN_RESOURCE"
  | "CONFLICT"
  | "COMMAND_PARKED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "TIMEOUT"
  | "DRAINING"
  | "EVENTS_MISSED"
  | "TRANSCRIBER_UNAVAILABLE";

/**
 * Its kitchen view.
 */
export interface KitchenOrder {
  /**
   * When the order was accepted, ms since the Unix epoch.
   */
  createdAt: number;
  /**
   * `kitchen-{n}`, matching the order's `order-{n}`.
   */
  id: string;
  /**
   * The cart's items.
   */
  items: unknown[];
  /**
   * The order's id.
   */
  orderId: string;
  /**
   * The order's number.
   */
  orderNumber: string;
  /**
   * The order type.
   */
  orderType: string;
  /**
   * The kitchen status.
   */
  status: "pending" | "preparing" | "ready" | "completed" | "cancelled";
  [k: string]: unknown;
}
/**
 * The order.
 */
export interface Order {
  /**
   * The cart, as sent.
   */
  cart: {
    [k: string]: unknown;
  };
  /**
   * When it was accepted, ms since the Unix epoch.
   */
  createdAt: number;
  /**
   * `{name, phone}`, as sent.
   */
  customer?: {
    [k: string]: unknown;
  };
  /**
   * Order id, unique per tenant (`order-{n}`).
   */
  id: string;
  /**
   * The idempotency key it was submitted with.
   */
  idempotencyKey?: string | null;
  /**
   * `ORD-YYYYMMDD-NNN`, numbered per tenant per day in the tenant's time zone.
   */
  orderNumber: string;
  /**
   * `dine-in`, `takeout` or `delivery`.
   */
  orderType: string;
  /**
   * `cash` or `online`, as sent.
   */
  paymentMethod?: {
    [k: string]: unknown;
  };
  /**
   * The status the POS sent with the order (e.g. `confirmed`).
   */
  posStatus?: {
    [k: string]: unknown;
  };
  /**
   * Where it came from, as sent.
   */
  source?: {
    [k: string]: unknown;
  };
  /**
   * The kitchen status.
   */
  status: "pending" | "preparing" | "ready" | "completed" | "cancelled";
  /**
   * The tenant.
   */
  tenantId: string;
  /**
   * When its status last changed, ms since the Unix epoch.
   */
  updatedAt: number;
  [k: string]: unknown;
}
/**
 * What a kitchen display shows of an order (seed 002's `kitchenOrder`).
 */
export interface KitchenOrder1 {
  /**
   * When the order was accepted, ms since the Unix epoch.
   */
  createdAt: number;
  /**
   * `kitchen-{n}`, matching the order's `order-{n}`.
   */
  id: string;
  /**
   * The cart's items.
   */
  items: unknown[];
  /**
   * The order's id.
   */
  orderId: string;
  /**
   * The order's number.
   */
  orderNumber: string;
  /**
   * The order type.
   */
  orderType: string;
  /**
   * The kitchen status.
   */
  status: "pending" | "preparing" | "ready" | "completed" | "cancelled";
  [k: string]: unknown;
}
/**
 * An order as the server knows it (seed 002's `order`, with `id` and `orderNumber`).
 */
export interface Order1 {
  /**
   * The cart, as sent.
   */
  cart: {
    [k: string]: unknown;
  };
  /**
   * When it was accepted, ms since the Unix epoch.
   */
  createdAt: number;
  /**
   * `{name, phone}`, as sent.
   */
  customer?: {
    [k: string]: unknown;
  };
  /**
   * Order id, unique per tenant (`order-{n}`).
   */
  id: string;
  /**
   * The idempotency key it was submitted with.
   */
  idempotencyKey?: string | null;
  /**
   * `ORD-YYYYMMDD-NNN`, numbered per tenant per day in the tenant's time zone.
   */
  orderNumber: string;
  /**
   * `dine-in`, `takeout` or `delivery`.
   */
  orderType: string;
  /**
   * `cash` or `online`, as sent.
   */
  paymentMethod?: {
    [k: string]: unknown;
  };
  /**
   * The status the POS sent with the order (e.g. `confirmed`).
   */
  posStatus?: {
    [k: string]: unknown;
  };
  /**
   * Where it came from, as sent.
   */
  source?: {
    [k: string]: unknown;
  };
  /**
   * The kitchen status.
   */
  status: "pending" | "preparing" | "ready" | "completed" | "cancelled";
  /**
   * The tenant.
   */
  tenantId: string;
  /**
   * When its status last changed, ms since the Unix epoch.
   */
  updatedAt: number;
  [k: string]: unknown;
}
