// Generated from schemas/json/record.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * A business record on its way to SQL, as published on `tw.rec.{domain}.{tenant}.{kind}`:
 * alone, or in a JSON array with the other records of its tenant and kind from the same handler
 * batch (one JetStream message for a batch's orders or scans; read with
 * [`Record::parse_message`]).
 * Handlers hold its fields as a [`crate::Frame`] (serialized once, copied into the outbox and
 * the publish); the SQL writer reads them as a [`Value`] (the default).
 */
export interface Record {
  /**
   * The record's fields.
   */
  data: {
    [k: string]: unknown;
  };
  /**
   * Unique per record: a second write with the same id changes nothing.
   */
  id: string;
  /**
   * What kind of record: names the table it goes to.
   */
  kind: string;
  /**
   * The tenant.
   */
  tenant?: string;
}
