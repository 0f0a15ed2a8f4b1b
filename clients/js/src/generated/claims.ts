// Generated from schemas/json/claims.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

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
