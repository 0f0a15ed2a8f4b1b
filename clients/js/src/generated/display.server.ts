// Generated from schemas/json/display.server.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * Server → client frames on `/session/{id}/display`.
 */
export type ServerFrame =
  | {
      /**
       * The per-session event sequence the state includes; updates continue at `seq + 1`.
       */
      seq: number;
      state: SessionState;
      /**
       * Server time, ms.
       */
      timestamp: number;
      type: "initial_state";
    }
  | {
      /**
       * Per-session sequence number: gaps and repeats are detectable.
       */
      seq: number;
      /**
       * Server time, ms.
       */
      timestamp: number;
      type: "update";
      update: DisplayUpdate1;
    }
  | {
      /**
       * Server time, ms.
       */
      timestamp: number;
      type: "pong";
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
       * Server time, ms.
       */
      timestamp: number;
      type: "error";
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
 * The state.
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
/**
 * One display update: the body of `POST /session/{id}/update`, and the `update` of an
 * `update` frame. Fields other than `type`, `displayData` and `timestamp` are kept as sent.
 */
export interface DisplayUpdate1 {
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
