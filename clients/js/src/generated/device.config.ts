// Generated from schemas/json/device.config.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * A device's configuration, as `PUT /api/devices/{id}/config` stores it and the `config`
 * frame pushes it. Fields other than those named here are kept and pushed as sent.
 */
export interface DeviceConfig {
  /**
   * In registration mode an unknown tag is registered (a `device_tags` row without a user).
   */
  registrationMode?: boolean;
  /**
   * The minimum time between two accepted scans, ms (0 to 60000; default: the tenant's
   * setting, else 1000, the seed's rule).
   */
  scanIntervalMs?: number | null;
  [k: string]: unknown;
}
