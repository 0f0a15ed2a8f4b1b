//! Which accepted sockets the edge serves: a global connection cap kept below the process's
//! file limit, a cap per client address and a rate of new connections per address. The accept
//! loop of [`crate::server`] asks the [`Gate`] about each socket; a socket over a limit is
//! still served a little (`/healthz` and `/metrics` answer, everything else gets HTTP 503
//! `TOO_MANY_CONNECTIONS` with `Retry-After`) while a few such sockets are open at once (the
//! headroom), and is closed right after accept when even that headroom is used up.

use crate::limit::LimitClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// File descriptors kept free for everything that is not a client socket (the NATS connection,
/// the listener, the runtime, logs, TLS files, a database pool in `dev`) and for the headroom.
pub const FILE_RESERVE: usize = 512;

/// How many sockets over a limit may be open at once to be told so (and to read `/healthz`).
pub const DEFAULT_HEADROOM: usize = 64;

/// How long a client refused for a cap is asked to wait.
const CAP_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The process's soft limit of open files (`RLIMIT_NOFILE`); `None` when unlimited or unknown.
pub fn open_file_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `limit`.
        let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        if result != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        usize::try_from(limit.rlim_cur).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Where [`raise_open_file_limit`] stops when the hard limit is unlimited: the kernel's own
/// per-process ceiling (`fs.nr_open`), or this when it cannot be read.
const UNLIMITED_FILES_TARGET: u64 = 1 << 20;

/// Raises the process's soft limit of open files to its hard limit (to the kernel's `fs.nr_open`
/// when the hard limit is unlimited), as Go and nginx do: a shell's default soft limit of 1,024
/// would otherwise cap an edge at about 500 sockets while the hard limit allows far more.
/// Children started afterwards (dev's nats-server) inherit it. Returns the soft limit before
/// and after; `Ok(None)` where there is no such limit.
pub fn raise_open_file_limit() -> std::io::Result<Option<(u64, u64)>> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the valid, exclusively borrowed `limit`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = limit.rlim_cur;
        let target = if limit.rlim_max == libc::RLIM_INFINITY {
            std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .unwrap_or(UNLIMITED_FILES_TARGET)
        } else {
            limit.rlim_max
        };
        if before == libc::RLIM_INFINITY || before >= target {
            return Ok(Some((before, before)));
        }
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads one valid `rlimit`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Some((before, target)))
    }
    #[cfg(not(unix))]
    {
        Ok(None)
    }
}

/// The default global cap: the file limit less [`FILE_RESERVE`] (at least 64); 1,048,576 when
/// the process has no file limit.
pub fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(files) => files.saturating_sub(FILE_RESERVE).max(64),
        None => 1 << 20,
    }
}

/// The limits a [`Gate`] enforces; 0 turns a per-address limit off.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64).
    pub max_connections_per_ip: usize,
    /// New connections per second from one address, a burst of as many.
    pub connection_rate_per_ip: u32,
    /// Sockets over a limit served at once, to answer 503 or `/healthz`.
    pub headroom: usize,
    /// The clock of the accept rate (tests freeze it).
    pub clock: LimitClock,
}

/// Why a socket is not served in full; a metrics label and the answer's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The edge holds `max_connections`.
    MaxConnections,
    /// The address holds `max_connections_per_ip`.
    MaxConnectionsPerIp,
    /// The address opened connections faster than `connection_rate_per_ip`.
    ConnectionRatePerIp {
        /// When the address may open the next one.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The `reason` label of `tablewire_edge_connections_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::ConnectionRatePerIp { .. } => "connection_rate_per_ip",
        }
    }

    /// The message of the `TOO_MANY_CONNECTIONS` answer.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::MaxConnections => "this edge holds as many connections as it allows",
            Refusal::MaxConnectionsPerIp => "too many connections from this address",
            Refusal::ConnectionRatePerIp { .. } => "new connections from this address too fast",
        }
    }

    /// How long the client is asked to wait before it tries again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::ConnectionRatePerIp { retry_after } => *retry_after,
            _ => CAP_RETRY_AFTER,
        }
    }
}

/// What the edge does with an accepted socket.
pub enum Verdict {
    /// Serve it; the pass counts it until dropped.
    Serve(Pass),
    /// Serve only `/healthz` and `/metrics`; answer anything else with the refusal.
    Restrict(Pass, Refusal),
    /// Close it at once: over a limit and no headroom left to say so.
    Close(Refusal),
}

type AcceptRate = RateLimiter<
    IpAddr,
    DashMapStateStore<IpAddr>,
    LimitClock,
    NoOpMiddleware<governor::nanos::Nanos>,
>;

/// Counts open connections and decides about new ones.
pub struct Gate {
    limits: Limits,
    open: AtomicUsize,
    restricted: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    accept_rate: Option<AcceptRate>,
}

/// The address a per-address limit applies to: IPv4 as is (also when mapped into IPv6), IPv6
/// by its /64, the least a single host is usually given.
pub fn address_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl Gate {
    /// A gate enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Gate> {
        let accept_rate = NonZeroU32::new(limits.connection_rate_per_ip).map(|rate| {
            RateLimiter::dashmap_with_clock(Quota::per_second(rate), limits.clock.clone())
        });
        Arc::new(Gate {
            limits,
            open: AtomicUsize::new(0),
            restricted: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            accept_rate,
        })
    }

    fn per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides about a socket just accepted from `peer`.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Verdict {
        let ip = address_key(peer);
        let refusal = match self.check_rate(ip) {
            Some(refusal) => refusal,
            None => match self.take_slot(ip) {
                None => {
                    return Verdict::Serve(Pass {
                        gate: self.clone(),
                        held: Held::Slot(ip),
                    });
                }
                Some(refusal) => refusal,
            },
        };
        let restricted = self.restricted.fetch_add(1, Ordering::AcqRel);
        if restricted >= self.limits.headroom {
            self.restricted.fetch_sub(1, Ordering::AcqRel);
            return Verdict::Close(refusal);
        }
        Verdict::Restrict(
            Pass {
                gate: self.clone(),
                held: Held::Headroom,
            },
            refusal,
        )
    }

    fn check_rate(&self, ip: IpAddr) -> Option<Refusal> {
        use governor::clock::Clock;
        let limiter = self.accept_rate.as_ref()?;
        let not_until = limiter.check_key(&ip).err()?;
        Some(Refusal::ConnectionRatePerIp {
            retry_after: not_until.wait_time_from(self.limits.clock.now()),
        })
    }

    /// Counts one more connection from `ip` unless a cap says no.
    fn take_slot(&self, ip: IpAddr) -> Option<Refusal> {
        let mut per_ip = self.per_ip();
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if self.limits.max_connections_per_ip > 0 && from_ip >= self.limits.max_connections_per_ip {
            return Some(Refusal::MaxConnectionsPerIp);
        }
        if self.open.load(Ordering::Acquire) >= self.limits.max_connections {
            return Some(Refusal::MaxConnections);
        }
        self.open.fetch_add(1, Ordering::AcqRel);
        per_ip.insert(ip, from_ip + 1);
        None
    }

    /// Connections counted against the caps.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Forgets addresses whose accept rate is back to a full burst (governor keeps every key it
    /// has seen until told); the edge calls it on a timer.
    pub fn forget_idle_addresses(&self) {
        if let Some(limiter) = &self.accept_rate {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

enum Held {
    /// A place under the caps, for this address.
    Slot(IpAddr),
    /// A place in the headroom.
    Headroom,
}

/// One accepted socket's place; dropping it frees the place. Kept as long as the socket is
/// open: by the HTTP connection, and by a WebSocket's task after an upgrade.
pub struct Pass {
    gate: Arc<Gate>,
    held: Held,
}

impl Drop for Pass {
    fn drop(&mut self) {
        match self.held {
            Held::Slot(ip) => {
                let mut per_ip = self.gate.per_ip();
                if let Some(count) = per_ip.get_mut(&ip) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        per_ip.remove(&ip);
                    }
                }
                drop(per_ip);
                self.gate.open.fetch_sub(1, Ordering::AcqRel);
            }
            Held::Headroom => {
                self.gate.restricted.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, per_ip: usize, rate: u32, headroom: usize) -> (Arc<Gate>, LimitClock) {
        let clock = LimitClock::frozen();
        let gate = Gate::new(Limits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            connection_rate_per_ip: rate,
            headroom,
            clock: clock.clone(),
        });
        (gate, clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn served(v: Verdict) -> Pass {
        match v {
            Verdict::Serve(pass) => pass,
            Verdict::Restrict(_, r) => panic!("restricted: {r:?}"),
            Verdict::Close(r) => panic!("closed: {r:?}"),
        }
    }

    fn restricted(v: Verdict) -> (Pass, Refusal) {
        match v {
            Verdict::Restrict(pass, r) => (pass, r),
            _ => panic!("not restricted"),
        }
    }

    #[test]
    fn the_per_address_cap_counts_open_connections_only() {
        let (gate, _) = gate(100, 2, 0, 4);
        let a = served(gate.admit(ip("10.0.0.1")));
        let _b = served(gate.admit(ip("10.0.0.1")));
        let (_, why) = restricted(gate.admit(ip("10.0.0.1")));
        assert_eq!(why, Refusal::MaxConnectionsPerIp);
        let _other = served(gate.admit(ip("10.0.0.2")));
        drop(a);
        let _c = served(gate.admit(ip("10.0.0.1")));
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn the_global_cap_then_the_headroom_then_a_close() {
        let (gate, _) = gate(2, 0, 0, 1);
        let _a = served(gate.admit(ip("10.0.0.1")));
        let _b = served(gate.admit(ip("10.0.0.2")));
        let (held, why) = restricted(gate.admit(ip("10.0.0.3")));
        assert_eq!(why, Refusal::MaxConnections);
        assert!(matches!(
            gate.admit(ip("10.0.0.4")),
            Verdict::Close(Refusal::MaxConnections)
        ));
        drop(held);
        let _ = restricted(gate.admit(ip("10.0.0.4")));
        assert_eq!(gate.open(), 2);
    }

    #[test]
    fn the_accept_rate_refills_with_time_and_idle_addresses_are_forgotten() {
        let (gate, clock) = gate(100, 0, 2, 4);
        let _a = served(gate.admit(ip("10.0.0.1")));
        let _b = served(gate.admit(ip("10.0.0.1")));
        let (_, why) = restricted(gate.admit(ip("10.0.0.1")));
        let wait = why.retry_after();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        clock.advance(wait);
        let _c = served(gate.admit(ip("10.0.0.1")));
        clock.advance(Duration::from_secs(5));
        gate.forget_idle_addresses();
        assert_eq!(gate.accept_rate.as_ref().map(|l| l.len()), Some(0));
    }

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn the_default_cap_stays_below_the_file_limit() {
        if let Some(files) = open_file_limit().filter(|&f| f >= 2 * FILE_RESERVE) {
            assert!(default_max_connections() + DEFAULT_HEADROOM < files);
        }
    }
}
