// Generated from schemas/json/collab.state.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * The full order state of a room: the `data` of `sync` and the `orderState` of every change.
 */
export interface OrderState {
  /**
   * From the first `join`.
   */
  circleId?: string | null;
  /**
   * When the room was created, ms.
   */
  createdAt: number;
  /**
   * For `custom` splits: the amounts as supplied (absent while pending).
   */
  customAmounts?: {
    [k: string]: number;
  } | null;
  /**
   * When finalized, ms.
   */
  finalizedAt?: number | null;
  /**
   * Who finalized.
   */
  finalizedBy?: string | null;
  /**
   * The first participant to join.
   */
  initiatedBy?: string | null;
  /**
   * The items, in the order they were added.
   */
  items: Item[];
  /**
   * The number of the next item id.
   */
  nextItem: number;
  /**
   * The order's id: `{room}-{createdAt}` (a room reused after expiry makes a new order).
   */
  orderId: string;
  /**
   * Everyone who joined, in join order.
   */
  participants: Participant[];
  /**
   * The room id.
   */
  sessionId: string;
  /**
   * How the bill is split.
   */
  splitType: "equal" | "itemized" | "custom";
  /**
   * Each participant's share, computed by the server.
   */
  splits: Share[];
  /**
   * `active` or `finalized`.
   */
  status: "active" | "finalized";
  /**
   * The tenant the room shows: the verified token's, or in a tokenless (open-tenant) room
   * the `tenantId` its first join named. Display only: the room's key, records and events
   * use the tenant the edge gave the connection.
   */
  tenantId: string;
  /**
   * Sum of the items' subtotals, minor units.
   */
  total: number;
  /**
   * The last accepted change, ms (idle expiry counts from here).
   */
  updatedAt: number;
}
/**
 * One item of an order.
 */
export interface Item {
  /**
   * When, ms.
   */
  addedAt: number;
  /**
   * Who added it.
   */
  addedBy: string;
  /**
   * Their name at the time.
   */
  addedByName: string;
  /**
   * Free text.
   */
  customization?: string | null;
  /**
   * The dish.
   */
  dishName: string;
  /**
   * e.g. `veg`.
   */
  dishType?: string | null;
  /**
   * Server-assigned id, `item_{n}`.
   */
  id: string;
  /**
   * Unit price, minor units.
   */
  price: number;
  /**
   * 1..99.
   */
  quantity: number;
  /**
   * price × quantity.
   */
  subtotal: number;
}
/**
 * One participant of a room.
 */
export interface Participant {
  /**
   * False after `leave` (until they join again).
   */
  active: boolean;
  /**
   * When they (first) joined, ms.
   */
  joinedAt: number;
  /**
   * Id.
   */
  participantId: string;
  /**
   * Display name.
   */
  participantName: string;
  /**
   * Phone, from `join`.
   */
  phone?: string | null;
}
/**
 * One participant's share of the total.
 */
export interface Share {
  /**
   * How much, minor units.
   */
  amount: number;
  /**
   * Who.
   */
  participantId: string;
}
