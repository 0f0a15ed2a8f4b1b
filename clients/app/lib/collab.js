// Collaborative order rooms (seed 001): `GET /parties/collaborative_order/{room}`. Each
// command resolves with the broadcast that applied it (or rejects with the room's error); the
// room's order state is kept from `sync` and every event's `data`. Commands are not queued
// while offline (they carry no idempotency key): they fail with `not_connected`, and one whose
// socket dropped before its answer fails with `connection_lost` (the next `sync` shows
// whether it was applied).
import { Connection } from "./connection.js";
import { topLevelError } from "./pos.js";
/** The broadcast each command is answered by. */
const ANSWER = {
    join: "participant_joined",
    add_item: "item_added",
    remove_item: "item_removed",
    update_quantity: "quantity_updated",
    update_split: "split_updated",
    finalize: "order_finalized",
    leave: "participant_left",
};
export class CollabConnection extends Connection {
    constructor(options) {
        const room = options.room;
        const seq = (frame) => (typeof frame.seq === "number" ? frame.seq : undefined);
        super({
            path: () => `/parties/collaborative_order/${encodeURIComponent(room)}`,
            snapshots: true,
            snapshotSeq: (frame) => (frame.type === "sync" ? seq(frame) : undefined),
            eventSeq: seq,
            errorBody: topLevelError,
            answers: (frame, command) => 
            // A join is answered by `sync` to the joiner (no participantId) or the broadcast.
            (command.frame.type === "join" && frame.type === "sync" && frame.seq === undefined) ||
                (frame.participantId === command.frame.participantId && frame.type === ANSWER[String(command.frame.type)]),
        }, options);
        this.room = room;
        this.participantId = options.participantId;
        this.participantName = options.participantName;
        this.on("frame", (frame) => this.track(frame));
    }
    join(data = {}) {
        return this.command("join", data);
    }
    addItem(item) {
        return this.command("add_item", item);
    }
    removeItem(itemId) {
        return this.command("remove_item", { itemId });
    }
    updateQuantity(itemId, quantity) {
        return this.command("update_quantity", { itemId, quantity });
    }
    updateSplit(split) {
        return this.command("update_split", split);
    }
    finalize() {
        return this.command("finalize");
    }
    leave() {
        return this.command("leave");
    }
    command(type, data) {
        const frame = {
            type,
            participantId: this.participantId,
            participantName: this.participantName,
            timestamp: Date.now(),
        };
        if (data !== undefined)
            frame.data = data;
        return this.send({ frame, durable: false });
    }
    track(frame) {
        const data = frame.data;
        if (!data || typeof data !== "object" || frame.type === "error")
            return;
        const order = "orderState" in data ? data.orderState : data;
        if (!order || typeof order !== "object" || !("items" in order))
            return;
        this.order = order;
        this.emit("change");
    }
}
