// Seed 002's POS client, written as its document ("WebSocket Real-time Integration") describes
// it, since the document gives no complete class: `POSWebSocketClient` (src/lib/posWebSocketClient.ts:
// connect, exponential backoff with jitter — at most 10 attempts, 1 s base, 30 s cap — an
// in-memory queue of messages sent while offline, flushed once connected, handlers per message
// type, isConnected / getQueuedMessageCount) and `POSStore.submitOrder` (src/stores/posStore.ts:
// WebSocket when connected, else the HTTP API, else local-only). Configuration is the seed's:
// VITE_BACKEND_WS_URL (`ws://host/ws`, to which `/restaurant-pos/{tenantId}` is added, as the
// seed's constructed URL has it) and VITE_BACKEND_API_URL (`http://host/api`); the logged-in
// user's token goes in the socket URL's `token` query parameter (a browser WebSocket sends no
// headers) and in `Authorization: Bearer` for HTTP. Used by pos.mjs.

export class POSWebSocketClient {
  MAX_RECONNECT_ATTEMPTS = 10;
  BASE_RECONNECT_DELAY = 1000;
  MAX_RECONNECT_DELAY = 30000;

  /** @param {{wsUrl: string, WebSocket: typeof globalThis.WebSocket, name?: string}} config */
  constructor({ wsUrl, WebSocket, name = "POSWebSocketClient" }) {
    this.wsUrl = wsUrl;
    this.WebSocket = WebSocket;
    this.name = name;
    this.ws = null;
    this.status = "disconnected";
    this.reconnectAttempts = 0;
    this.reconnectTimer = null;
    this.messageQueue = [];
    this.handlers = new Map();
    this.shouldReconnect = false;
  }

  log(...args) {
    console.log(`[${this.name}]`, ...args);
  }

  /** Connects for a tenant with the logged-in user's token (WebSocketManager calls this at login). */
  connect(tenantId, token) {
    this.tenantId = tenantId;
    this.token = token;
    this.shouldReconnect = true;
    this.open();
  }

  open() {
    const url = `${this.wsUrl}/restaurant-pos/${encodeURIComponent(this.tenantId)}?token=${encodeURIComponent(this.token)}`;
    this.log("Connecting to:", url.replace(/token=[^&]*/, "token=…"));
    this.status = "connecting";
    const ws = new this.WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.log("Connected");
      this.status = "connected";
      this.reconnectAttempts = 0;
      this.processQueue();
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        this.log("Unreadable message", event.data);
        return;
      }
      this.log("Received message:", message.type);
      this.handleMessage(message);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.log("Disconnected");
      this.status = "disconnected";
      this.ws = null;
      if (this.shouldReconnect) this.scheduleReconnect();
    };
    ws.onerror = () => {
      this.log("WebSocket error");
    };
  }

  scheduleReconnect() {
    if (this.reconnectAttempts >= this.MAX_RECONNECT_ATTEMPTS) {
      this.log("Max reconnection attempts reached");
      return;
    }
    const exponential = Math.min(this.BASE_RECONNECT_DELAY * 2 ** this.reconnectAttempts, this.MAX_RECONNECT_DELAY);
    const delay = Math.round(exponential * (0.8 + Math.random() * 0.4)); // ±20 % jitter
    this.reconnectAttempts++;
    this.log(`Reconnecting in ${delay} ms (attempt ${this.reconnectAttempts})`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.open();
    }, delay);
  }

  /** WebSocketManager calls this at logout. */
  disconnect() {
    this.shouldReconnect = false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    this.ws = null;
    this.status = "disconnected";
    ws?.close();
  }

  isConnected() {
    return this.status === "connected" && this.ws?.readyState === this.WebSocket.OPEN;
  }

  getQueuedMessageCount() {
    return this.messageQueue.length;
  }

  /** Sends now when connected, else queues until the next connect. */
  send(message) {
    if (this.isConnected()) {
      this.log("Sending message:", message.type);
      this.ws.send(JSON.stringify(message));
    } else {
      this.log("Queueing message:", message.type);
      this.messageQueue.push(message);
    }
  }

  processQueue() {
    if (this.messageQueue.length === 0) return;
    this.log("Processing queued messages:", this.messageQueue.length);
    const queued = this.messageQueue;
    this.messageQueue = [];
    for (const message of queued) this.send(message);
  }

  submitOrder(order) {
    this.send({ type: "submit_order", order });
  }

  /** Registers a handler for one message type (order_created, order_status_update, sync_state, error). */
  on(type, handler) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(handler);
  }

  handleMessage(message) {
    switch (message.type) {
      case "order_created":
      case "order_status_update":
      case "sync_state":
      case "error":
        for (const handler of this.handlers.get(message.type) ?? []) handler(message);
        break;
      default:
        this.log("Unhandled message type:", message.type);
    }
  }
}

/** The POS store's hybrid submission: WebSocket when connected, else HTTP, else local-only. */
export class POSStore {
  constructor({ client, apiUrl, token }) {
    this.client = client;
    this.apiUrl = apiUrl;
    this.token = token;
    this.recentOrders = [];
  }

  async submitOrder(order) {
    if (this.client.isConnected()) {
      this.client.submitOrder(order);
      // Optimistic: a temporary order until `order_created` brings the real id and number.
      const temporary = { ...order, id: `temp-${Date.now()}`, status: "pending" };
      this.recentOrders.unshift(temporary);
      console.log("[POSStore] Order submitted via WebSocket (async)");
      return { via: "websocket", order: temporary };
    }
    console.log("[POSStore] WebSocket not connected, using HTTP API");
    try {
      const response = await fetch(`${this.apiUrl}/orders`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` },
        body: JSON.stringify(order),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
      const created = await response.json();
      this.recentOrders.unshift(created);
      return { via: "http", order: created };
    } catch (error) {
      console.log("[POSStore] Backend submission failed, using local mode", String(error));
      const local = { ...order, id: `local-${Date.now()}`, status: "pending" };
      this.recentOrders.unshift(local);
      return { via: "local", order: local };
    }
  }
}
