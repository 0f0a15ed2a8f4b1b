// Generated from schemas/json/display.init.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * The body of `POST /session/{id}/init`.
 */
export interface InitRequest {
  /**
   * The tenant the session belongs to.
   */
  tenantId?: string | null;
}
