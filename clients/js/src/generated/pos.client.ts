// Generated from schemas/json/pos.client.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * Client → server frames on `/ws/restaurant-pos/{tenantId}`.
 */
export type ClientFrame =
  | {
      /**
       * Optional client id for this submission: the same key within 24 hours (over the
       * WebSocket or `POST /api/orders`, on any edge) returns the same `order_created` (same
       * order id and number) and never makes a second order. The 24 hours run from the
       * submission that created the order, as the server accepted it; after them the key is
       * forgotten and makes a new order. Without it, every submission is a new order. 1 to
       * 128 bytes, no control characters.
       */
      idempotencyKey?: string | null;
      order: OrderInput;
      type: "submit_order";
    }
  | {
      /**
       * The order's id.
       */
      orderId: string;
      /**
       * The new status.
       */
      status: "pending" | "preparing" | "ready" | "completed" | "cancelled";
      type: "update_order_status";
      /**
       * Who changed it (e.g. `kitchen-terminal-1`).
       */
      updatedBy?: string | null;
    }
  | {
      type: "ping";
    };

/**
 * The order.
 */
export interface OrderInput {
  /**
   * The cart: `{items: [{name, price, quantity, …}], …}`; other fields are kept as sent.
   */
  cart?: {
    [k: string]: unknown;
  };
  /**
   * `{name, phone}`.
   */
  customer?: {
    [k: string]: unknown;
  };
  /**
   * `dine-in`, `takeout` or `delivery`.
   */
  orderType?: {
    [k: string]: unknown;
  };
  /**
   * `cash` or `online`.
   */
  paymentMethod?: {
    [k: string]: unknown;
  };
  /**
   * Where the order comes from (the seed sends `pos`).
   */
  source?: {
    [k: string]: unknown;
  };
  /**
   * The POS's status for the order (the seed sends `confirmed`); kept as `posStatus`.
   */
  status?: {
    [k: string]: unknown;
  };
  /**
   * The tenant as the client knows it; informational: the tenant comes from the path/token.
   */
  tenantId?: {
    [k: string]: unknown;
  };
  [k: string]: unknown;
}
