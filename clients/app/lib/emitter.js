// A small typed event emitter (browsers have no node:events); every connection class extends
// it to tell the application about state changes, frames, snapshots and errors.
export class Emitter {
    constructor() {
        this.listeners = new Map();
    }
    /** Calls `listener` on every `name` event; returns a function that stops it. */
    on(name, listener) {
        let set = this.listeners.get(name);
        if (!set) {
            set = new Set();
            this.listeners.set(name, set);
        }
        set.add(listener);
        return () => this.off(name, listener);
    }
    off(name, listener) {
        this.listeners.get(name)?.delete(listener);
    }
    /** Calls the listeners of `name`; one that throws does not stop the others (nor the client). */
    emit(name, ...args) {
        for (const listener of [...(this.listeners.get(name) ?? [])]) {
            try {
                listener(...args);
            }
            catch (error) {
                queueMicrotask(() => {
                    throw error;
                });
            }
        }
    }
}
