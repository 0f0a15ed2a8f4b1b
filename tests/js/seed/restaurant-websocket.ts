// Seed 004's client, `RestaurantWebSocket`, copied byte for byte from the seed's "Client
// Implementation" section (everything below this comment). Not edited: tests/js/events.mjs
// loads it with lib/seed-ts.mjs, which strips the TypeScript types and gives it its connection
// URL (in place of the seed's localhost:3001 literal) and `getToken()` (the app's own function, which the
// seed calls on reconnect) — the two things a seed client needs, and nothing else.
class RestaurantWebSocket {
  private ws: WebSocket | null = null;
  private reconnectAttempts = 0;

  connect(token: string) {
    this.ws = new WebSocket('ws://localhost:3001');

    this.ws.onopen = () => {
      console.log('Connected');
      this.reconnectAttempts = 0;
      this.authenticate(token);
    };

    this.ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      this.handleMessage(message);
    };

    this.ws.onclose = () => {
      console.log('Disconnected');
      this.reconnect();
    };

    this.ws.onerror = (error) => {
      console.error('WebSocket error:', error);
    };
  }

  private authenticate(token: string) {
    this.send({
      type: 'auth',
      token: token
    });
  }

  private handleMessage(message: any) {
    switch(message.type) {
      case 'order:created':
        // Handle new order
        break;
      case 'order:updated':
        // Handle order update
        break;
      // ... handle other events
    }
  }

  private reconnect() {
    const delay = Math.min(1000 * Math.pow(2, this.reconnectAttempts), 30000);
    this.reconnectAttempts++;

    setTimeout(() => {
      this.connect(getToken());
    }, delay);
  }

  send(data: any) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(data));
    }
  }
}
