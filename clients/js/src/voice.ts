// Voice streams (seed 004): `GET /voice-stream`. `start`, `audio` and `end` are queued while
// offline and sent in order on reconnect: the handler keeps chunks by `sequence` and drops
// repeats, so sending one again is harmless. Transcripts arrive as `voice:transcript`
// frames, missing chunks at the end as `voice:gap`.

import { Connection, type ConnectionOptions } from "./connection.js";
import { nestedError } from "./events.js";

export interface VoiceOptions extends ConnectionOptions {}

export interface Transcript {
  text: string;
  confidence?: number;
  is_final?: boolean;
}

export class VoiceConnection extends Connection {
  private sequence = 0;

  constructor(options: VoiceOptions) {
    super(
      {
        path: () => "/voice-stream",
        auth: "message",
        snapshots: false,
        errorBody: nestedError,
        ping: () => ({ type: "ping" }),
      },
      options,
    );
  }

  /** Starts a session; chunk numbering restarts at 1. */
  start(sessionId: string, language = "en"): Promise<unknown> {
    this.sequence = 0;
    return this.queue({ type: "voice:start", data: { session_id: sessionId, language } });
  }

  /** Sends one chunk of audio (base64), numbered in order. */
  audio(base64: string): Promise<unknown> {
    this.sequence += 1;
    return this.queue({ type: "voice:audio", data: { audio: base64, sequence: this.sequence } });
  }

  end(sessionId: string, durationMs?: number): Promise<unknown> {
    return this.queue({ type: "voice:end", data: { session_id: sessionId, duration: durationMs } });
  }

  /** Registers `listener` for transcripts. */
  onTranscript(listener: (transcript: Transcript) => void): () => void {
    return this.on("frame", (frame) => {
      if (frame.type === "voice:transcript") listener(frame.data as Transcript);
    });
  }

  private queue(frame: { type: string; data: object }): Promise<unknown> {
    return this.send({ frame, durable: true, fireAndForget: true });
  }
}
