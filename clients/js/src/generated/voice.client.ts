// Generated from schemas/json/voice.client.json by scripts/generate-types.mjs (npm run generate); do not edit.
// The wire types of tablewire, imported by the connection classes in src/.

/**
 * What a client sends on `/voice-stream` (besides `auth` and `ping`, as on the events
 * socket).
 */
export type ClientFrame =
  | {
      /**
       * The JWT.
       */
      token: string;
      type: "auth";
    }
  | {
      type: "ping";
    }
  | {
      data: StartData;
      type: "voice:start";
    }
  | {
      data: AudioData;
      type: "voice:audio";
    }
  | {
      data: EndData;
      type: "voice:end";
    };

/**
 * Session and language.
 */
export interface StartData {
  /**
   * The spoken language, e.g. `en-US`.
   */
  language?: string | null;
  /**
   * The session id (the key of the voice session).
   */
  session_id: string;
}
/**
 * The chunk.
 */
export interface AudioData {
  /**
   * Audio bytes, base64.
   */
  audio: string;
  /**
   * Position of this chunk in the session (1, 2, 3 …); chunks may arrive in any order
   * and more than once.
   */
  sequence: number;
}
/**
 * Session and duration.
 */
export interface EndData {
  /**
   * Seconds of audio the client recorded.
   */
  duration?: number | null;
  /**
   * The session id.
   */
  session_id: string;
}
