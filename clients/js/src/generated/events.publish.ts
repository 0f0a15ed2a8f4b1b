// Generated from schemas/json/events.publish.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * `POST /api/events`: a backend publishes an event to its restaurant's feed (service JWT).
 */
export interface PublishRequest {
  /**
   * The event's data in seed 004's shape.
   */
  data?: {
    [k: string]: unknown;
  };
  /**
   * The event name, e.g. `table:updated`.
   */
  type: string;
}
