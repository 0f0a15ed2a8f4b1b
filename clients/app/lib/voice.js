// Voice streams (seed 004): `GET /voice-stream`. `start`, `audio` and `end` are queued while
// offline and sent in order on reconnect: the handler keeps chunks by `sequence` and drops
// repeats, so sending one again is harmless. Transcripts arrive as `voice:transcript`
// frames, missing chunks at the end as `voice:gap`.
import { Connection } from "./connection.js";
import { nestedError } from "./events.js";
export class VoiceConnection extends Connection {
    constructor(options) {
        super({
            path: () => "/voice-stream",
            auth: "message",
            snapshots: false,
            errorBody: nestedError,
            ping: () => ({ type: "ping" }),
        }, options);
        this.sequence = 0;
    }
    /** Starts a session; chunk numbering restarts at 1. */
    start(sessionId, language = "en") {
        this.sequence = 0;
        return this.queue({ type: "voice:start", data: { session_id: sessionId, language } });
    }
    /** Sends one chunk of audio (base64), numbered in order. */
    audio(base64) {
        this.sequence += 1;
        return this.queue({ type: "voice:audio", data: { audio: base64, sequence: this.sequence } });
    }
    end(sessionId, durationMs) {
        return this.queue({ type: "voice:end", data: { session_id: sessionId, duration: durationMs } });
    }
    /** Registers `listener` for transcripts. */
    onTranscript(listener) {
        return this.on("frame", (frame) => {
            if (frame.type === "voice:transcript")
                listener(frame.data);
        });
    }
    queue(frame) {
        return this.send({ frame, durable: true, fireAndForget: true });
    }
}
