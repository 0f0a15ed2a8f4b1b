// Generated from schemas/json/display.client.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * Client → server frames on `/session/{id}/display`.
 */
export type ClientFrame = {
  type: "ping";
};
