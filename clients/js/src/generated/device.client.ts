// Generated from schemas/json/device.client.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * Client → server frames on `/ws/device`, tagged by the seed's `action`.
 */
export type ClientFrame =
  | {
      action: "scan";
      /**
       * Where the reader is (free text).
       */
      location?: string | null;
      /**
       * The tag's id.
       */
      tagId: string;
    }
  | {
      action: "heartbeat";
      /**
       * The device's own clock, passed through.
       */
      timestamp?: {
        [k: string]: unknown;
      };
    };
