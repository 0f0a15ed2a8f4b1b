// A small typed event emitter (browsers have no node:events); every connection class extends
// it to tell the application about state changes, frames, snapshots and errors.

export type Listener<Args extends unknown[]> = (...args: Args) => void;

type AnyListener = (...args: unknown[]) => void;

export class Emitter<Events extends { [name: string]: unknown[] }> {
  private readonly listeners = new Map<keyof Events, Set<AnyListener>>();

  /** Calls `listener` on every `name` event; returns a function that stops it. */
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name);
    if (!set) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as unknown as AnyListener);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    this.listeners.get(name)?.delete(listener as unknown as AnyListener);
  }

  /** Calls the listeners of `name`; one that throws does not stop the others (nor the client). */
  protected emit<K extends keyof Events>(name: K, ...args: Events[K]): void {
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
