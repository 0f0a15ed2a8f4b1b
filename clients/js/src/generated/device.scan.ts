// Generated from schemas/json/device.scan.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * The body of `POST /api/rfid/scan` (the HTTP fallback).
 */
export interface ScanRequest {
  /**
   * The device.
   */
  deviceId: string;
  /**
   * Where the reader is.
   */
  location?: string | null;
  /**
   * The tag's id.
   */
  tagId: string;
}
