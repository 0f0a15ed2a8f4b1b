// Generated from schemas/json/display.update.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

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
