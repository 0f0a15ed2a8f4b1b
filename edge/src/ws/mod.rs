//! WebSocket plumbing of the edge: frames ([`frame`]), connections ([`conn`]) and the registry
//! of live connections used by heartbeats, replies and drain ([`Registry`]).

pub mod conn;
pub mod frame;

pub use conn::{Conn, Counters, Handler, Io};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every live connection of this edge, by id.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection.
    pub fn open(&self, endpoint: &'static str, max_queued: usize, counters: Counters) -> Arc<Conn> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Conn::new(id, endpoint, max_queued, counters));
        self.lock().insert(id, conn.clone());
        conn
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// A connection by id.
    pub fn get(&self, id: u64) -> Option<Arc<Conn>> {
        self.lock().get(&id).cloned()
    }

    /// A snapshot of all connections.
    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.lock().values().cloned().collect()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none are open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
