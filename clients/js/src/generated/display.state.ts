// Generated from schemas/json/display.state.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * The session state, exactly as `initial_state` and `GET /session/{id}/state` show it.
 */
export interface SessionState {
  /**
   * The `displayData` of the last `order_summary` or `order_update`, or null.
   */
  currentOrder?: {
    [k: string]: unknown;
  };
  /**
   * The last 100 updates of any type.
   */
  displayUpdates: DisplayUpdate[];
  /**
   * The session id from the path.
   */
  sessionId: string;
  /**
   * When the session was created, milliseconds since the Unix epoch.
   */
  startedAt: number;
  /**
   * The tenant given to `/init`, or null.
   */
  tenantId?: string | null;
  /**
   * The last 100 updates of type `transcription`.
   */
  transcriptions: DisplayUpdate[];
}
/**
 * One display update: the body of `POST /session/{id}/update`, and the `update` of an
 * `update` frame. Fields other than `type`, `displayData` and `timestamp` are kept as sent.
 */
export interface DisplayUpdate {
  /**
   * The content for the display.
   */
  displayData?: {
    [k: string]: unknown;
  };
  /**
   * When the server accepted the update, milliseconds since the Unix epoch.
   */
  timestamp?: number | null;
  /**
   * What to show: `transcription`, `dish_card`, `menu`, `order_summary`, `order_update`, …
   */
  type: string;
  [k: string]: unknown;
}
