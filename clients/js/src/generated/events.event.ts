// Generated from schemas/json/events.event.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * What a subscriber receives: seed 004's event shape, plus the feed's sequence number.
 */
export interface EventFrame {
  /**
   * The event's data.
   */
  data: {
    [k: string]: unknown;
  };
  /**
   * Per-tenant sequence number.
   */
  seq?: number | null;
  /**
   * When it was accepted, RFC 3339 (UTC).
   */
  timestamp: string;
  /**
   * The event name.
   */
  type: string;
}
