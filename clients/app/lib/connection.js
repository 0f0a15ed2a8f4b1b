// The core every domain's connection class is built on: one WebSocket kept open with
// exponential backoff (jitter, cap), a token asked of the application on every attempt,
// `seq` tracking (repeats dropped; a gap makes it reconnect for a fresh snapshot), an outbox of
// commands sent one at a time and settled by the frame that answers them (durable ones wait
// out a disconnection and are sent again, in order, on reconnect; a fallback such as POS HTTP
// may deliver them meanwhile), state events for a status indicator, and close codes mapped to
// errors. Domain classes (display.ts, collab.ts, pos.ts, events.ts, voice.ts, device.ts)
// supply a `Protocol` saying what their frames mean.
import { Backoff } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { CloseCode, TablewireError, closeError, serverError } from "./errors.js";
import { SeqTracker } from "./sequence.js";
import { OPEN, messageText, platformWebSocket } from "./socket.js";
export class Connection extends Emitter {
    constructor(protocol, options) {
        super();
        this.protocol = protocol;
        this.urlIndex = 0;
        this.seq = new SeqTracker();
        this.outbox = [];
        this.fallbackRunning = false;
        this.tokenReason = "connect";
        this.gotFrame = false;
        this.resyncing = false;
        this.currentState = "idle";
        this.lastFrameAt = 0;
        this.stats = { opened: 0, duplicatesDropped: 0, gaps: 0, tokensRequested: 0 };
        const urls = typeof options.url === "string" ? [options.url] : [...options.url];
        if (urls.length === 0)
            throw new TypeError("at least one edge URL is needed");
        this.urls = urls.map(socketBase);
        const token = options.token;
        this.tokenSupplier = typeof token === "function" ? token : () => token;
        this.WebSocketImpl = options.WebSocket;
        this.backoff = new Backoff(options.backoff);
        this.commandTimeoutMs = options.commandTimeoutMs ?? 10000;
        this.fetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
        this.httpUrl = options.httpUrl?.replace(/\/+$/, "");
        this.keepaliveMs = options.keepaliveMs ?? 25000;
    }
    get state() {
        return this.currentState;
    }
    /** True while the socket is open. */
    get isOpen() {
        return this.currentState === "open" && this.socket?.readyState === OPEN;
    }
    /** Commands not yet answered, oldest first (durable ones survive disconnections). */
    get queued() {
        return this.outbox.length;
    }
    /** Where HTTP calls go: `httpUrl`, else the edge in use as `http(s)://host`. */
    get httpBase() {
        return this.httpUrl ?? this.urls[this.urlIndex].replace(/^ws/, "http");
    }
    /** The seq of the last snapshot or event delivered. */
    get position() {
        return this.seq.position;
    }
    /** Opens the socket (and keeps it open until `close()`). */
    connect() {
        if (this.currentState !== "idle" && this.currentState !== "closed")
            return;
        void this.open();
    }
    /** Closes for good: no more reconnects; waiting commands fail with `closed`. */
    close() {
        this.setState("closed");
        clearTimeout(this.reconnectTimer);
        clearInterval(this.keepaliveTimer);
        const socket = this.socket;
        this.socket = undefined;
        socket?.close(CloseCode.normal, "client closed");
        for (const pending of this.outbox.splice(0)) {
            clearTimeout(pending.timer);
            pending.reject(new TablewireError("closed", "the connection was closed"));
        }
    }
    /** Asks the application for a token (for HTTP calls too). */
    async token(reason = "http") {
        this.stats.tokensRequested += 1;
        return this.tokenSupplier({ reason, attempt: this.backoff.attempt });
    }
    /** Queues `command`; resolves with the frame (or fallback answer) that answers it. */
    send(command) {
        if (this.currentState === "closed") {
            return Promise.reject(new TablewireError("closed", "the connection was closed"));
        }
        return new Promise((resolve, reject) => {
            this.outbox.push({ ...command, resolve: resolve, reject, sent: false });
            this.pump();
        });
    }
    /** Writes a frame now if the socket is open (no answer awaited); false when it is not. */
    sendNow(frame) {
        if (!this.isOpen || !this.socket)
            return false;
        this.socket.send(JSON.stringify(frame));
        return true;
    }
    /** Drops the socket and reconnects at once, for a fresh snapshot. */
    resync() {
        if (this.currentState === "closed")
            return;
        const socket = this.socket;
        if (socket) {
            this.resyncing = true; // until its close: then reconnect at once
            socket.close(CloseCode.resync, "resync");
        }
        else if (this.currentState === "reconnecting") {
            void this.open(); // no socket: the next one brings a snapshot anyway
        }
    }
    setState(state, extra = {}) {
        this.currentState = state;
        this.emit("state", { state, attempt: this.backoff.attempt, url: this.urls[this.urlIndex], ...extra });
    }
    async open() {
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = undefined;
        this.resyncing = false;
        this.setState("connecting");
        let token;
        try {
            token = this.protocol.auth === "none" ? undefined : await this.token(this.tokenReason);
        }
        catch (cause) {
            const error = new TablewireError("auth", `the token supplier failed: ${String(cause)}`);
            this.emit("error", error);
            this.scheduleReconnect(error);
            return;
        }
        if (this.currentState !== "connecting")
            return; // closed meanwhile
        const auth = this.protocol.auth ?? "query";
        let url = this.urls[this.urlIndex] + this.protocol.path();
        if (auth === "query" && token) {
            url += `${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
        }
        let socket;
        try {
            socket = new (this.WebSocketImpl ?? platformWebSocket())(url);
        }
        catch (cause) {
            const where = this.urls[this.urlIndex] + this.protocol.path(); // without the token
            const error = new TablewireError("connection_lost", `cannot open ${where}: ${String(cause)}`);
            this.emit("error", error);
            this.scheduleReconnect(error);
            return;
        }
        this.socket = socket;
        this.gotFrame = false;
        socket.onopen = () => {
            if (this.socket !== socket)
                return;
            this.stats.opened += 1;
            this.tokenReason = "connect";
            if (auth === "message" && token)
                socket.send(JSON.stringify({ type: "auth", token }));
            for (const frame of this.protocol.greeting?.() ?? [])
                socket.send(JSON.stringify(frame));
            this.setState("open");
            this.startKeepalive(socket);
            this.pump();
        };
        socket.onmessage = (event) => {
            // While resyncing, the old socket's frames are stale: the fresh snapshot replaces them.
            if (this.socket !== socket || this.resyncing)
                return;
            this.lastFrameAt = Date.now();
            this.receive(event.data);
        };
        socket.onerror = () => {
            // Always followed by onclose, which decides what to do.
        };
        socket.onclose = (event) => {
            if (this.socket !== socket)
                return;
            this.socket = undefined;
            this.closed(event.code, event.reason);
        };
    }
    /** Pings every `keepaliveMs`; a socket silent for two intervals is dropped (and reopened). */
    startKeepalive(socket) {
        clearInterval(this.keepaliveTimer);
        const ping = this.protocol.ping;
        if (!ping || this.keepaliveMs <= 0)
            return;
        this.lastFrameAt = Date.now();
        this.keepaliveTimer = setInterval(() => {
            if (this.socket !== socket) {
                clearInterval(this.keepaliveTimer);
                return;
            }
            if (Date.now() - this.lastFrameAt > 2 * this.keepaliveMs) {
                clearInterval(this.keepaliveTimer);
                this.socket = undefined;
                socket.close(CloseCode.normal, "silent");
                this.closed(CloseCode.silentServer, "nothing heard for two keepalive intervals");
                return;
            }
            socket.send(JSON.stringify(ping()));
        }, this.keepaliveMs);
    }
    closed(code, reason) {
        clearInterval(this.keepaliveTimer);
        if (this.currentState === "closed")
            return;
        const error = closeError(code, reason);
        if (code === CloseCode.tooBig) {
            // The command in flight is the likely culprit: sending it again would loop. (Before
            // `fail`, which marks durable commands unsent.)
            const head = this.outbox[0];
            if (head?.sent)
                this.settle(head, undefined, error);
        }
        this.fail("sent", new TablewireError("connection_lost", `connection closed (${code}) before an answer`));
        if (error)
            this.emit("error", error);
        if (code === CloseCode.policy)
            this.tokenReason = "auth_failed";
        if (code === CloseCode.goingAway) {
            this.urlIndex = (this.urlIndex + 1) % this.urls.length;
            this.scheduleReconnect(error, Math.round(Math.random() * 250));
        }
        else if (this.resyncing) {
            this.resyncing = false;
            this.scheduleReconnect(error, 0);
        }
        else {
            this.scheduleReconnect(error);
        }
    }
    scheduleReconnect(error, delayMs) {
        if (this.currentState === "closed")
            return;
        const delay = delayMs ?? this.backoff.next();
        this.setState("reconnecting", { delayMs: delay, error });
        this.reconnectTimer = setTimeout(() => void this.open(), delay);
        this.pump(); // durable commands may go by the fallback meanwhile; others fail
    }
    receive(data) {
        const text = messageText(data);
        let frame;
        try {
            frame = text === undefined ? undefined : JSON.parse(text);
        }
        catch {
            frame = undefined;
        }
        if (typeof frame !== "object" || frame === null || Array.isArray(frame))
            return;
        this.deliver(frame);
    }
    deliver(frame) {
        if (!this.gotFrame) {
            this.gotFrame = true;
            this.backoff.reset();
        }
        const body = this.protocol.errorBody?.(frame);
        if (body) {
            const error = serverError(body);
            if (error.kind === "auth")
                this.tokenReason = "auth_failed";
            const head = this.outbox[0];
            if (head?.sent && !head.fireAndForget) {
                if (error.retryable)
                    this.retryLater(head, error.retryAfterMs ?? 1000);
                else
                    this.settle(head, undefined, error);
            }
            this.emit("error", error);
            this.emit("frame", frame);
            return;
        }
        const snapshot = this.protocol.snapshotSeq?.(frame);
        if (snapshot !== undefined) {
            this.seq.snapshot(snapshot);
            this.emit("snapshot", frame);
        }
        else {
            const seq = this.protocol.eventSeq?.(frame);
            if (seq !== undefined) {
                const verdict = this.seq.event(seq);
                if (verdict.kind === "duplicate") {
                    this.stats.duplicatesDropped += 1;
                    this.emit("duplicate", frame);
                    this.settleIfAnswer(frame); // a repeat still answers a command sent again
                    return;
                }
                if (verdict.kind === "gap") {
                    this.stats.gaps += 1;
                    const resync = this.protocol.snapshots;
                    this.emit("gap", { expected: verdict.expected, got: verdict.got, resync });
                    if (resync) {
                        this.resync();
                        return;
                    }
                }
            }
        }
        this.emit("frame", frame);
        this.settleIfAnswer(frame);
    }
    settleIfAnswer(frame) {
        const head = this.outbox[0];
        if (head?.sent && this.protocol.answers?.(frame, head))
            this.settle(head, frame);
    }
    retryLater(pending, delayMs) {
        clearTimeout(pending.timer);
        pending.sent = true; // hold the outbox until the retry
        pending.timer = setTimeout(() => {
            pending.sent = false;
            this.pump();
        }, delayMs);
    }
    /** Settles `pending` (answer or error) and moves on to the next command. */
    settle(pending, answer, error) {
        const index = this.outbox.indexOf(pending);
        if (index < 0)
            return;
        this.outbox.splice(index, 1);
        clearTimeout(pending.timer);
        if (error)
            pending.reject(error);
        else
            pending.resolve(answer);
        this.pump();
    }
    /** Fails the non-durable commands (`sent`: only those awaiting an answer). */
    fail(which, error) {
        for (const pending of [...this.outbox]) {
            if (pending.durable) {
                if (pending.sent) {
                    clearTimeout(pending.timer);
                    pending.sent = false;
                }
            }
            else if (which === "all" || pending.sent) {
                this.settle(pending, undefined, error);
            }
        }
    }
    /** Moves the outbox on: sends the head over the socket, or its fallback while down. */
    pump() {
        const head = this.outbox[0];
        if (!head || head.sent || this.fallbackRunning || this.currentState === "closed")
            return;
        if (this.isOpen && this.socket) {
            this.socket.send(JSON.stringify(head.frame));
            if (head.fireAndForget) {
                this.settle(head, undefined);
                return;
            }
            head.sent = true;
            head.timer = setTimeout(() => {
                head.sent = false;
                if (head.durable)
                    this.pump();
                else
                    this.settle(head, undefined, new TablewireError("timeout", "no answer in time"));
            }, this.commandTimeoutMs);
            return;
        }
        if (this.currentState === "connecting")
            return; // about to open
        if (head.fallback) {
            this.fallbackRunning = true;
            head
                .fallback()
                .then((answer) => {
                this.fallbackRunning = false;
                // Undefined: not delivered; the socket takes it once open (the fallback is tried
                // again at the next reconnect attempt, so it is paced by the backoff).
                if (answer !== undefined)
                    this.settle(head, answer);
                else if (this.isOpen)
                    this.pump();
            }, (error) => {
                this.fallbackRunning = false;
                const failure = error instanceof TablewireError ? error : new TablewireError("server", String(error));
                this.settle(head, undefined, failure);
            });
            return;
        }
        if (!head.durable) {
            this.settle(head, undefined, new TablewireError("not_connected", "not connected"));
        }
    }
}
/** `http(s)://` → `ws(s)://`, without a trailing slash. */
function socketBase(url) {
    return url.replace(/^http/, "ws").replace(/\/+$/, "");
}
