// Generated from schemas/json/pos.settings.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * `PUT /api/pos/settings` body (admin or service token) and answer.
 */
export interface Settings {
  /**
   * Minutes east of UTC of the tenant's local time; order numbers' days start at local
   * midnight. Default 0 (UTC). Within ±840.
   */
  utcOffsetMinutes: number;
}
