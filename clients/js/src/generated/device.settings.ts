// Generated from schemas/json/device.settings.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * A tenant's device settings: the body of `PUT /api/devices/settings` (admin token), kept in
 * the KV bucket `tw_device_settings` under the tenant. Unknown fields are refused, so a
 * misspelt setting cannot silently reset one.
 */
export interface Settings {
  /**
   * The minimum time between two accepted scans of one device, ms (0 to 60000), for the
   * tenant's devices whose own config sets none. Absent or null: the seed's 1000.
   */
  scanIntervalMs?: number | null;
}
