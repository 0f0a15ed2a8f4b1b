// Generated from schemas/json/voice.transcribe.request.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * The request a transcriber receives on `tw.svc.transcribe`: the next chunks of one session,
 * in sequence order, each exactly once across the session's requests.
 */
export interface TranscribeRequest {
  /**
   * The chunks, in order.
   */
  chunks: Chunk[];
  /**
   * True when the session has ended and this is its last audio.
   */
  is_final: boolean;
  /**
   * The language from `voice:start`.
   */
  language?: string | null;
  /**
   * Increases per session.
   */
  request_id: number;
  /**
   * The voice session.
   */
  session_id: string;
  /**
   * The restaurant.
   */
  tenant: string;
}
/**
 * One chunk in a transcriber request.
 */
export interface Chunk {
  /**
   * Base64 audio.
   */
  audio: string;
  /**
   * Its sequence number.
   */
  sequence: number;
}
