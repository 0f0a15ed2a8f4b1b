// Generated from schemas/json/pos.submit.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * `POST /api/orders` body: seed 002's order, optionally wrapped as `{order, idempotencyKey}`.
 * The idempotency key may also come in the `Idempotency-Key` header.
 */
export type SubmitRequest =
  | {
      /**
       * The idempotency key: the same key within 24 hours returns the same order (as for
       * `submit_order`).
       */
      idempotencyKey?: string | null;
      order: OrderInput;
    }
  | {
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
       * The idempotency key: the same key within 24 hours returns the same order (as for
       * `submit_order`).
       */
      idempotencyKey?: string | null;
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
