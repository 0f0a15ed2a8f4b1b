// Per-key `seq` tracking: a snapshot sets the position, an event right after it advances it,
// a repeat is dropped, and a jump is a gap (the connection then takes a fresh snapshot, or
// tells the application where no snapshot exists). Pure; used by connection.ts.
export class SeqTracker {
    /** A snapshot that includes every event up to `seq`. */
    snapshot(seq) {
        this.position = seq;
    }
    /** Judges an event with `seq`, advancing the position unless it is a duplicate. */
    event(seq) {
        if (this.position === undefined) {
            this.position = seq;
            return { kind: "next" };
        }
        if (seq <= this.position)
            return { kind: "duplicate" };
        const expected = this.position + 1;
        this.position = seq;
        return seq === expected ? { kind: "next" } : { kind: "gap", expected, got: seq };
    }
}
