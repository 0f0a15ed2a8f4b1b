// Generated from schemas/json/collab.client.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * A client message (seed 001). Unknown fields are ignored; wrong types are rejected.
 */
export type ClientMessage =
  | {
      data?: JoinData;
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "join";
    }
  | {
      data: AddItemData;
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "add_item";
    }
  | {
      data: ItemRef;
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "remove_item";
    }
  | {
      data: QuantityData;
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "update_quantity";
    }
  | {
      data: SplitData;
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "update_split";
    }
  | {
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "finalize";
    }
  | {
      /**
       * The participant (seed: `tenant_9876543210`).
       */
      participantId: string;
      /**
       * The participant's display name.
       */
      participantName?: string | null;
      /**
       * The client's clock, ms; informational only (the server uses its own).
       */
      timestamp?: number | null;
      type: "leave";
    };

/**
 * Circle, phone.
 */
export interface JoinData {
  /**
   * The circle (group) the order is for.
   */
  circleId?: string | null;
  /**
   * The participant's phone.
   */
  phone?: string | null;
  /**
   * The tenant the client believes it is in. Never decides the room's tenant (the token, or
   * without one the edge's open tenant, does); a tokenless room's first join sets the
   * `tenantId` the room shows.
   */
  tenantId?: string | null;
}
/**
 * The item.
 */
export interface AddItemData {
  /**
   * Free text, e.g. "Extra spicy".
   */
  customization?: string | null;
  /**
   * The dish.
   */
  dishName: string;
  /**
   * e.g. `veg`, `non-veg`.
   */
  dishType?: string | null;
  /**
   * Unit price in minor units (integer).
   */
  price: number;
  /**
   * How many, 1..99.
   */
  quantity: number;
}
/**
 * Which.
 */
export interface ItemRef {
  /**
   * The server-assigned item id (`item_…`).
   */
  itemId: string;
}
/**
 * Which and how many.
 */
export interface QuantityData {
  /**
   * The item.
   */
  itemId: string;
  /**
   * The new quantity, 1..99.
   */
  quantity: number;
}
/**
 * The split.
 */
export interface SplitData {
  /**
   * For `custom`: participantId → amount in minor units, summing to the total. Without it
   * the split becomes custom with its amounts pending.
   */
  amounts?: {
    [k: string]: number;
  } | null;
  /**
   * The split type.
   */
  splitType: "equal" | "itemized" | "custom";
}
