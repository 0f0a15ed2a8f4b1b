// Generated from schemas/json/envelope.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * One accepted client command on its way to a handler. Published as JSON to
 * `tw.in.{domain}.{tenant}.{key}` with `Nats-Msg-Id` set to [`Envelope::id`].
 */
export interface Envelope {
  /**
   * When the edge accepted it, milliseconds since the Unix epoch. Handlers use this as
   * "now", so applying the same command again gives the same result.
   */
  at: number;
  /**
   * The verified claims, when the command came with a token.
   */
  claims?: Claims | null;
  /**
   * The domain command.
   */
  command: {
    [k: string]: unknown;
  };
  /**
   * The domain.
   */
  domain: "display" | "events" | "collab" | "pos" | "voice" | "device";
  /**
   * The message id, also the `Nats-Msg-Id`: the client's id when it sent one.
   */
  id: string;
  /**
   * The key inside the domain and tenant: a session, room, tenant or device id.
   */
  key: string;
  origin: Origin;
  /**
   * The tenant, from the verified token or the path, never from the command.
   */
  tenant: string;
}
/**
 * The verified claims of a JWT, as the edge checked them. Also the claims
 * `tablewire token` mints. The edge reads a token's payload with [`Claims::from_jwt`]; in the
 * envelope the tenant is always under `tenant`.
 */
export interface Claims {
  /**
   * Expiry, seconds since the Unix epoch.
   */
  exp: number;
  /**
   * Issued at, seconds since the Unix epoch.
   */
  iat?: number | null;
  /**
   * The role, e.g. `service`, `admin`, `staff`, `kitchen`, `device`, `customer`. Compared
   * exactly: `ADMIN` is not `admin`.
   */
  role?: string | null;
  /**
   * Who the token was issued to (a user, a terminal, a service, a device).
   */
  sub: string;
  /**
   * The tenant (restaurant) the token is scoped to. A token may name it under any of
   * [`TENANT_CLAIMS`]; the envelope carries it here.
   */
  tenant?: string | null;
}
/**
 * Who sent it.
 */
export interface Origin {
  /**
   * The connection on that edge, for WebSocket commands.
   */
  conn?: number | null;
  /**
   * The id of the edge node that accepted the command.
   */
  edge: string;
  /**
   * A request id the edge waits on, for HTTP commands that return the handler's result.
   */
  request?: string | null;
}
