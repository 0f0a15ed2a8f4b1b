// The core every domain's connection class is built on: one WebSocket kept open with
// exponential backoff (jitter, cap), a token asked of the application on every attempt,
// `seq` tracking (repeats dropped; a gap makes it reconnect for a fresh snapshot), an outbox of
// commands sent one at a time and settled by the frame that answers them (durable ones wait
// out a disconnection and are sent again, in order, on reconnect; a fallback such as POS HTTP
// may deliver them meanwhile), state events for a status indicator, and close codes mapped to
// errors. Domain classes (display.ts, collab.ts, pos.ts, events.ts, voice.ts, device.ts)
// supply a `Protocol` saying what their frames mean.

import { Backoff, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { CloseCode, TablewireError, closeError, serverError, type ErrorBody } from "./errors.js";
import { SeqTracker } from "./sequence.js";
import { OPEN, messageText, platformWebSocket, type WebSocketConstructor, type WebSocketLike } from "./socket.js";

/** A parsed frame: a JSON object. */
export type Frame = { [field: string]: unknown };

export type ConnectionState =
  /** Created, `connect()` not called yet. */
  | "idle"
  /** Opening a socket (first attempt or right after a 1001 / resync). */
  | "connecting"
  /** The socket is open. */
  | "open"
  /** Waiting `delayMs` before the next attempt. */
  | "reconnecting"
  /** `close()` was called. */
  | "closed";

export interface StateChange {
  state: ConnectionState;
  /** Failed attempts since the last working connection. */
  attempt: number;
  /** For `reconnecting`: the wait before the next attempt. */
  delayMs?: number;
  /** What ended the previous socket, if anything went wrong. */
  error?: TablewireError;
  /** The edge URL in use (or about to be). */
  url: string;
}

/** Why a token is being asked for. */
export interface TokenRequest {
  /** `connect`: an ordinary (re)connect; `auth_failed`: the last token was refused, mint a new one. */
  reason: "connect" | "auth_failed" | "http";
  attempt: number;
}

/** Gives the current token (refreshing it when it expired); called on every attempt. */
export type TokenSupplier = (request: TokenRequest) => string | undefined | Promise<string | undefined>;

export interface ConnectionOptions {
  /** The edge (`ws://host:port`, `wss://…`; `http(s)://` is accepted), or several: a drained
   * edge (close 1001) sends the client to the next. */
  url: string | readonly string[];
  /** The token, or a function giving it (called on every connect, so it can refresh). */
  token?: string | TokenSupplier;
  /** The WebSocket implementation; default the platform's (browsers, Node 22+). */
  WebSocket?: WebSocketConstructor;
  /** Reconnect delays. */
  backoff?: Partial<BackoffOptions>;
  /** How long a sent command may go unanswered before it is sent again (durable) or fails
   * (default 10 000 ms). */
  commandTimeoutMs?: number;
  /** `fetch` for HTTP calls (default the platform's). */
  fetch?: typeof fetch;
  /** Where HTTP calls go (`http://host:port`), when not to the socket's edge. */
  httpUrl?: string;
  /** Every this many ms the client pings (where the protocol has a ping) and drops a socket
   * that brought nothing for two intervals — a dead network path that sent no FIN (default
   * 25 000; 0: off). */
  keepaliveMs?: number;
}

/** A command waiting in the outbox. */
export interface Command {
  frame: Frame;
  /** Kept through disconnections and sent again until answered (it carries an idempotency
   * key, or repeating it is harmless). Others fail with `connection_lost` when the socket
   * drops while they wait for an answer, and with `not_connected` when there is no socket. */
  durable: boolean;
  /** Delivers the command another way while the socket is down (POS HTTP): resolves with
   * the answer, `undefined` to leave it for the socket, or throws a final error. */
  fallback?: () => Promise<unknown | undefined>;
  /** Answered by being written (no answer frame comes back). */
  fireAndForget?: boolean;
}

interface Pending extends Command {
  resolve: (answer: unknown) => void;
  reject: (error: TablewireError) => void;
  sent: boolean;
  timer?: ReturnType<typeof setTimeout>;
}

/** What a domain's frames mean. */
export interface Protocol {
  /** Path and query of the socket, without the token. */
  path(): string;
  /** Where the token goes: `?token=` (default), the first message (`auth` frame), or nowhere. */
  auth?: "query" | "message" | "none";
  /** The seq a snapshot frame includes; undefined for other frames. */
  snapshotSeq?(frame: Frame): number | undefined;
  /** An event's seq; undefined for replies and unsequenced notices. */
  eventSeq?(frame: Frame): number | undefined;
  /** True when the domain has snapshots (a gap reconnects); false: a gap is reported. */
  snapshots: boolean;
  /** Does `frame` answer `command`? `ack` settles it; an `error` frame always answers the
   * command in flight. */
  answers?(frame: Frame, command: Command): boolean;
  /** The error body of an `error` frame, if `frame` is one. */
  errorBody?(frame: Frame): ErrorBody | undefined;
  /** Frames to send first on every new socket (after auth), e.g. subscriptions. */
  greeting?(): Frame[];
  /** A frame the server answers, sent to check the socket is alive; none: no liveness check. */
  ping?(): Frame;
}

export interface ConnectionEvents {
  [name: string]: unknown[];
  state: [StateChange];
  /** Every frame delivered to the application (duplicates dropped). */
  frame: [Frame];
  /** A snapshot frame (also delivered as `frame`). */
  snapshot: [Frame];
  /** Events were missed: `resync` true means a fresh snapshot is on its way. */
  gap: [{ expected: number; got: number; resync: boolean }];
  /** A frame repeating a seq already delivered was dropped. */
  duplicate: [Frame];
  /** Errors: server `error` frames, close codes, refused tokens. */
  error: [TablewireError];
  /** A domain class's view (orders, state, room) changed. */
  change: [];
}

/** The counters of one connection, for tests and status pages. */
export interface ConnectionStats {
  opened: number;
  duplicatesDropped: number;
  gaps: number;
  tokensRequested: number;
}

export class Connection extends Emitter<ConnectionEvents> {
  private readonly urls: readonly string[];
  private urlIndex = 0;
  private readonly tokenSupplier: TokenSupplier;
  private readonly WebSocketImpl: WebSocketConstructor | undefined;
  private readonly backoff: Backoff;
  private readonly commandTimeoutMs: number;
  readonly fetch: typeof fetch;
  private readonly httpUrl: string | undefined;
  private readonly seq = new SeqTracker();
  private readonly outbox: Pending[] = [];
  private socket: WebSocketLike | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private fallbackRunning = false;
  private tokenReason: TokenRequest["reason"] = "connect";
  private gotFrame = false;
  private resyncing = false;
  private currentState: ConnectionState = "idle";
  private readonly keepaliveMs: number;
  private keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  private lastFrameAt = 0;
  readonly stats: ConnectionStats = { opened: 0, duplicatesDropped: 0, gaps: 0, tokensRequested: 0 };

  constructor(
    private readonly protocol: Protocol,
    options: ConnectionOptions,
  ) {
    super();
    const urls = typeof options.url === "string" ? [options.url] : [...options.url];
    if (urls.length === 0) throw new TypeError("at least one edge URL is needed");
    this.urls = urls.map(socketBase);
    const token = options.token;
    this.tokenSupplier = typeof token === "function" ? token : () => token;
    this.WebSocketImpl = options.WebSocket;
    this.backoff = new Backoff(options.backoff);
    this.commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.fetch = options.fetch ?? ((...args) => globalThis.fetch(...args));
    this.httpUrl = options.httpUrl?.replace(/\/+$/, "");
    this.keepaliveMs = options.keepaliveMs ?? 25_000;
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** True while the socket is open. */
  get isOpen(): boolean {
    return this.currentState === "open" && this.socket?.readyState === OPEN;
  }

  /** Commands not yet answered, oldest first (durable ones survive disconnections). */
  get queued(): number {
    return this.outbox.length;
  }

  /** Where HTTP calls go: `httpUrl`, else the edge in use as `http(s)://host`. */
  get httpBase(): string {
    return this.httpUrl ?? this.urls[this.urlIndex].replace(/^ws/, "http");
  }

  /** The seq of the last snapshot or event delivered. */
  get position(): number | undefined {
    return this.seq.position;
  }

  /** Opens the socket (and keeps it open until `close()`). */
  connect(): void {
    if (this.currentState !== "idle" && this.currentState !== "closed") return;
    void this.open();
  }

  /** Closes for good: no more reconnects; waiting commands fail with `closed`. */
  close(): void {
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
  async token(reason: TokenRequest["reason"] = "http"): Promise<string | undefined> {
    this.stats.tokensRequested += 1;
    return this.tokenSupplier({ reason, attempt: this.backoff.attempt });
  }

  /** Queues `command`; resolves with the frame (or fallback answer) that answers it. */
  send<T = Frame>(command: Command): Promise<T> {
    if (this.currentState === "closed") {
      return Promise.reject(new TablewireError("closed", "the connection was closed"));
    }
    return new Promise<T>((resolve, reject) => {
      this.outbox.push({ ...command, resolve: resolve as (answer: unknown) => void, reject, sent: false });
      this.pump();
    });
  }

  /** Writes a frame now if the socket is open (no answer awaited); false when it is not. */
  sendNow(frame: Frame): boolean {
    if (!this.isOpen || !this.socket) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Drops the socket and reconnects at once, for a fresh snapshot. */
  resync(): void {
    if (this.currentState === "closed") return;
    const socket = this.socket;
    if (socket) {
      this.resyncing = true; // until its close: then reconnect at once
      socket.close(CloseCode.resync, "resync");
    } else if (this.currentState === "reconnecting") {
      void this.open(); // no socket: the next one brings a snapshot anyway
    }
  }

  private setState(state: ConnectionState, extra: Partial<StateChange> = {}): void {
    this.currentState = state;
    this.emit("state", { state, attempt: this.backoff.attempt, url: this.urls[this.urlIndex], ...extra });
  }

  private async open(): Promise<void> {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.resyncing = false;
    this.setState("connecting");
    let token: string | undefined;
    try {
      token = this.protocol.auth === "none" ? undefined : await this.token(this.tokenReason);
    } catch (cause) {
      const error = new TablewireError("auth", `the token supplier failed: ${String(cause)}`);
      this.emit("error", error);
      this.scheduleReconnect(error);
      return;
    }
    if (this.currentState !== "connecting") return; // closed meanwhile
    const auth = this.protocol.auth ?? "query";
    let url = this.urls[this.urlIndex] + this.protocol.path();
    if (auth === "query" && token) {
      url += `${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
    }
    let socket: WebSocketLike;
    try {
      socket = new (this.WebSocketImpl ?? platformWebSocket())(url);
    } catch (cause) {
      const where = this.urls[this.urlIndex] + this.protocol.path(); // without the token
      const error = new TablewireError("connection_lost", `cannot open ${where}: ${String(cause)}`);
      this.emit("error", error);
      this.scheduleReconnect(error);
      return;
    }
    this.socket = socket;
    this.gotFrame = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.stats.opened += 1;
      this.tokenReason = "connect";
      if (auth === "message" && token) socket.send(JSON.stringify({ type: "auth", token }));
      for (const frame of this.protocol.greeting?.() ?? []) socket.send(JSON.stringify(frame));
      this.setState("open");
      this.startKeepalive(socket);
      this.pump();
    };
    socket.onmessage = (event) => {
      // While resyncing, the old socket's frames are stale: the fresh snapshot replaces them.
      if (this.socket !== socket || this.resyncing) return;
      this.lastFrameAt = Date.now();
      this.receive(event.data);
    };
    socket.onerror = () => {
      // Always followed by onclose, which decides what to do.
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.closed(event.code, event.reason);
    };
  }

  /** Pings every `keepaliveMs`; a socket silent for two intervals is dropped (and reopened). */
  private startKeepalive(socket: WebSocketLike): void {
    clearInterval(this.keepaliveTimer);
    const ping = this.protocol.ping;
    if (!ping || this.keepaliveMs <= 0) return;
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

  private closed(code: number, reason: string): void {
    clearInterval(this.keepaliveTimer);
    if (this.currentState === "closed") return;
    const error = closeError(code, reason);
    if (code === CloseCode.tooBig) {
      // The command in flight is the likely culprit: sending it again would loop. (Before
      // `fail`, which marks durable commands unsent.)
      const head = this.outbox[0];
      if (head?.sent) this.settle(head, undefined, error);
    }
    this.fail("sent", new TablewireError("connection_lost", `connection closed (${code}) before an answer`));
    if (error) this.emit("error", error);
    if (code === CloseCode.policy) this.tokenReason = "auth_failed";
    if (code === CloseCode.goingAway) {
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      this.scheduleReconnect(error, Math.round(Math.random() * 250));
    } else if (this.resyncing) {
      this.resyncing = false;
      this.scheduleReconnect(error, 0);
    } else {
      this.scheduleReconnect(error);
    }
  }

  private scheduleReconnect(error: TablewireError | undefined, delayMs?: number): void {
    if (this.currentState === "closed") return;
    const delay = delayMs ?? this.backoff.next();
    this.setState("reconnecting", { delayMs: delay, error });
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
    this.pump(); // durable commands may go by the fallback meanwhile; others fail
  }

  private receive(data: unknown): void {
    const text = messageText(data);
    let frame: unknown;
    try {
      frame = text === undefined ? undefined : JSON.parse(text);
    } catch {
      frame = undefined;
    }
    if (typeof frame !== "object" || frame === null || Array.isArray(frame)) return;
    this.deliver(frame as Frame);
  }

  private deliver(frame: Frame): void {
    if (!this.gotFrame) {
      this.gotFrame = true;
      this.backoff.reset();
    }
    const body = this.protocol.errorBody?.(frame);
    if (body) {
      const error = serverError(body);
      if (error.kind === "auth") this.tokenReason = "auth_failed";
      const head = this.outbox[0];
      if (head?.sent && !head.fireAndForget) {
        if (error.retryable) this.retryLater(head, error.retryAfterMs ?? 1000);
        else this.settle(head, undefined, error);
      }
      this.emit("error", error);
      this.emit("frame", frame);
      return;
    }
    const snapshot = this.protocol.snapshotSeq?.(frame);
    if (snapshot !== undefined) {
      this.seq.snapshot(snapshot);
      this.emit("snapshot", frame);
    } else {
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

  private settleIfAnswer(frame: Frame): void {
    const head = this.outbox[0];
    if (head?.sent && this.protocol.answers?.(frame, head)) this.settle(head, frame);
  }

  private retryLater(pending: Pending, delayMs: number): void {
    clearTimeout(pending.timer);
    pending.sent = true; // hold the outbox until the retry
    pending.timer = setTimeout(() => {
      pending.sent = false;
      this.pump();
    }, delayMs);
  }

  /** Settles `pending` (answer or error) and moves on to the next command. */
  private settle(pending: Pending, answer: unknown, error?: TablewireError): void {
    const index = this.outbox.indexOf(pending);
    if (index < 0) return;
    this.outbox.splice(index, 1);
    clearTimeout(pending.timer);
    if (error) pending.reject(error);
    else pending.resolve(answer);
    this.pump();
  }

  /** Fails the non-durable commands (`sent`: only those awaiting an answer). */
  private fail(which: "sent" | "all", error: TablewireError): void {
    for (const pending of [...this.outbox]) {
      if (pending.durable) {
        if (pending.sent) {
          clearTimeout(pending.timer);
          pending.sent = false;
        }
      } else if (which === "all" || pending.sent) {
        this.settle(pending, undefined, error);
      }
    }
  }

  /** Moves the outbox on: sends the head over the socket, or its fallback while down. */
  private pump(): void {
    const head = this.outbox[0];
    if (!head || head.sent || this.fallbackRunning || this.currentState === "closed") return;
    if (this.isOpen && this.socket) {
      this.socket.send(JSON.stringify(head.frame));
      if (head.fireAndForget) {
        this.settle(head, undefined);
        return;
      }
      head.sent = true;
      head.timer = setTimeout(() => {
        head.sent = false;
        if (head.durable) this.pump();
        else this.settle(head, undefined, new TablewireError("timeout", "no answer in time"));
      }, this.commandTimeoutMs);
      return;
    }
    if (this.currentState === "connecting") return; // about to open
    if (head.fallback) {
      this.fallbackRunning = true;
      head
        .fallback()
        .then(
          (answer) => {
            this.fallbackRunning = false;
            // Undefined: not delivered; the socket takes it once open (the fallback is tried
            // again at the next reconnect attempt, so it is paced by the backoff).
            if (answer !== undefined) this.settle(head, answer);
            else if (this.isOpen) this.pump();
          },
          (error: unknown) => {
            this.fallbackRunning = false;
            const failure =
              error instanceof TablewireError ? error : new TablewireError("server", String(error));
            this.settle(head, undefined, failure);
          },
        );
      return;
    }
    if (!head.durable) {
      this.settle(head, undefined, new TablewireError("not_connected", "not connected"));
    }
  }
}

/** `http(s)://` → `ws(s)://`, without a trailing slash. */
function socketBase(url: string): string {
  return url.replace(/^http/, "ws").replace(/\/+$/, "");
}
