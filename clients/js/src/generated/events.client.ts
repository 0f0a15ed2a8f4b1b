// Generated from schemas/json/events.client.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * What a client sends on the events socket (`/` and `/ws`).
 */
export type ClientFrame =
  | {
      /**
       * The JWT.
       */
      token: string;
      type: "auth";
    }
  | {
      /**
       * Event names, e.g. `order:created`.
       */
      events: string[];
      /**
       * Only events matching every filter.
       */
      filters?: {
        [k: string]: unknown;
      } | null;
      type: "subscribe";
    }
  | {
      /**
       * Event names.
       */
      events: string[];
      type: "unsubscribe";
    }
  | {
      type: "ping";
    };
