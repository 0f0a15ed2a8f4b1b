// Generated from schemas/json/voice.transcribe.reply.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * A transcriber's reply: a transcript, or `{"error": "…"}`.
 */
export type TranscribeReply =
  | Transcript
  | {
      /**
       * Why.
       */
      error: string;
    };

/**
 * The transcript of the chunks received so far.
 */
export interface Transcript {
  /**
   * 0 to 1.
   */
  confidence: number;
  /**
   * Whether this is the session's final transcript.
   */
  is_final: boolean;
  /**
   * The text.
   */
  text: string;
}
