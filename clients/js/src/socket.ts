// The WebSocket the client needs: the browser API's subset, which Node 22+'s global
// `WebSocket` and the `ws` package (passed in as `WebSocket`) both provide. No other
// dependency. Used by connection.ts.

export interface MessageLike {
  data: unknown;
}

export interface CloseLike {
  code: number;
  reason: string;
}

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: MessageLike) => void) | null;
  onclose: ((event: CloseLike) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** `readyState` of an open socket (the same in every implementation). */
export const OPEN = 1;

/** The platform's WebSocket, or an error saying to pass one in (Node before 22). */
export function platformWebSocket(): WebSocketConstructor {
  const found = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!found) {
    throw new Error(
      "no global WebSocket (Node before 22): pass one in, e.g. `import WebSocket from \"ws\"` and `{ WebSocket }`",
    );
  }
  return found;
}

/** The text of a message event's data (a string for text frames; bytes are decoded as UTF-8). */
export function messageText(data: unknown): string | undefined {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return undefined;
}
