// Generated from schemas/json/events.server.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * What the edge sends on the events socket besides the events themselves ([`EventFrame`]).
 */
export type ServerFrame =
  | {
      /**
       * RFC 3339.
       */
      timestamp: string;
      type: "connected";
    }
  | {
      /**
       * RFC 3339.
       */
      timestamp: string;
      type: "pong";
    }
  | {
      data: Subscriptions;
      /**
       * RFC 3339.
       */
      timestamp: string;
      type: "subscribed";
    }
  | {
      data: Subscriptions1;
      /**
       * RFC 3339.
       */
      timestamp: string;
      type: "unsubscribed";
    }
  | {
      data: ErrorBody;
      /**
       * RFC 3339.
       */
      timestamp: string;
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
 * The subscriptions now active.
 */
export interface Subscriptions {
  /**
   * Every event name the connection is subscribed to now.
   */
  events: string[];
}
/**
 * The subscriptions now active.
 */
export interface Subscriptions1 {
  /**
   * Every event name the connection is subscribed to now.
   */
  events: string[];
}
/**
 * `code` (catalogue name), `errorCode`, `message`, `retryable`, `retryAfterMs`.
 */
export interface ErrorBody {
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
}
