// Generated from schemas/json/device.state.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * One device's state, kept in KV (`tw_state_device`, key `{tenant}.{deviceId}`).
 */
export interface DeviceState {
  config: DeviceConfig;
  /**
   * Whether `config` was set by an administrator (then it is pushed on every connect).
   */
  configured: boolean;
  /**
   * The device id.
   */
  deviceId: string;
  /**
   * The live connection, when the device is online.
   */
  holder?: Holder | null;
  /**
   * When its last accepted scan happened, ms.
   */
  lastScanAt?: number | null;
  /**
   * When the device was last heard from (connect, scan, heartbeat), ms.
   */
  lastSeen: number;
  /**
   * Whether the device is online.
   */
  online: boolean;
  /**
   * Scans accepted so far.
   */
  scans: number;
}
/**
 * The stored configuration.
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
/**
 * The connection that currently holds a device.
 */
export interface Holder {
  /**
   * The connection on that edge.
   */
  conn: number;
  /**
   * The edge.
   */
  edge: string;
}
