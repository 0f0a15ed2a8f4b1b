// Generated from schemas/json/error.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

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
 * The JSON body of every HTTP error response.
 */
export interface HttpError {
  error: ErrorBody;
}
/**
 * The error.
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
