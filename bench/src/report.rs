//! Latency histograms and CPU accounting shared by the benchmarks, and how they print.

use hdrhistogram::Histogram;

/// A latency histogram in microseconds, 1 µs to 60 s.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Latencies one client measured in each phase (0 connect, 1 throughput, 2 latency), in
/// microseconds: a list per phase, merged into [`PhaseHistograms`] at the end. A histogram per
/// client (140 KiB each at three significant figures; 15,000 of them for 5,000 events
/// connections) made nearly every sample a cache miss, and the benchmark's own clients took
/// CPU from the system they measure.
#[derive(Default)]
pub struct PhaseSamples([Vec<u32>; 3]);

impl PhaseSamples {
    /// Records a frame sent at `sent_ns` and received at `now_ns` in `phase` (2 or more counts
    /// as 2).
    pub fn record(&mut self, phase: usize, sent_ns: u64, now_ns: u64) {
        let us = (now_ns.saturating_sub(sent_ns) / 1000).clamp(1, u64::from(u32::MAX));
        self.0[phase.min(2)].push(us as u32);
    }
}

/// The merged latencies of every client, one histogram per phase.
pub struct PhaseHistograms([Histogram<u64>; 3]);

impl Default for PhaseHistograms {
    fn default() -> Self {
        PhaseHistograms([
            latency_histogram(),
            latency_histogram(),
            latency_histogram(),
        ])
    }
}

impl PhaseHistograms {
    /// Adds one client's samples.
    pub fn add(&mut self, samples: &PhaseSamples) {
        for (hist, list) in self.0.iter_mut().zip(&samples.0) {
            for &us in list {
                let _ = hist.record(u64::from(us));
            }
        }
    }

    /// The histogram of `phase`.
    pub fn phase(&self, phase: usize) -> &Histogram<u64> {
        &self.0[phase.min(2)]
    }
}

/// `p50 … p99 … max` in milliseconds.
pub fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".to_string();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  ({} samples)",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// CPU seconds per process between two points in time.
pub struct CpuMeter {
    pids: Vec<(&'static str, u32, f64)>,
    own: f64,
    started: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring these processes (and this one).
    pub fn start(pids: &[(&'static str, u32)]) -> Self {
        CpuMeter {
            pids: pids
                .iter()
                .map(|&(role, pid)| (role, pid, crate::system::cpu_seconds(pid).unwrap_or(0.0)))
                .collect(),
            own: crate::system::own_cpu_seconds().unwrap_or(0.0),
            started: std::time::Instant::now(),
        }
    }

    /// `role cores` for each process since [`start`](Self::start).
    pub fn line(&self) -> String {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut parts: Vec<String> = self
            .pids
            .iter()
            .map(|&(role, pid, before)| {
                let used = crate::system::cpu_seconds(pid).unwrap_or(before) - before;
                format!("{role} {:.2}", used / wall)
            })
            .collect();
        let own = crate::system::own_cpu_seconds().unwrap_or(self.own) - self.own;
        parts.push(format!("bench clients {:.2}", own / wall));
        format!("CPU cores used: {}", parts.join(", "))
    }
}

/// A scrape of a Prometheus text endpoint: `name{labels}` → value.
#[derive(Debug, Default, Clone)]
pub struct Scrape(pub std::collections::HashMap<String, f64>);

impl Scrape {
    /// Parses Prometheus/OpenMetrics text.
    pub fn parse(text: &str) -> Scrape {
        let mut map = std::collections::HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            if let Some((name, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.parse::<f64>()
            {
                map.insert(name.to_string(), v);
            }
        }
        Scrape(map)
    }

    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// A histogram's `(count, mean, approximate p50, approximate p99)` between `before` and
    /// this scrape, in the histogram's unit. Percentiles are bucket upper bounds.
    pub fn histogram_since(&self, before: &Scrape, name: &str) -> Option<(f64, f64, f64, f64)> {
        let count = self.get(&format!("{name}_count")) - before.get(&format!("{name}_count"));
        if count <= 0.0 {
            return None;
        }
        let sum = self.get(&format!("{name}_sum")) - before.get(&format!("{name}_sum"));
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, v - before.get(k)))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let quantile = |q: f64| {
            buckets
                .iter()
                .find(|(_, cumulative)| *cumulative >= q * count)
                .map_or(f64::NAN, |(bound, _)| *bound)
        };
        Some((count, sum / count, quantile(0.5), quantile(0.99)))
    }

    /// A counter's increase since `before`.
    pub fn counter_since(&self, before: &Scrape, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }

    /// The summed increase since `before` of a counter over all its label sets.
    pub fn counter_family_since(&self, before: &Scrape, name: &str) -> f64 {
        let labelled = format!("{name}{{");
        self.0
            .keys()
            .filter(|k| *k == name || k.starts_with(&labelled))
            .map(|k| self.counter_since(before, k))
            .sum()
    }
}

/// Fetches and parses `/metrics` from `addr`.
pub async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    match crate::client::get(addr, "/metrics").await {
        Ok((_, text)) => Scrape::parse(&text),
        Err(_) => Scrape::default(),
    }
}

/// One line per stage of the pipeline: edge store latency, frames per socket write, handler
/// batch sizes and accept-to-write latency, from two scrapes of each process (all endpoints and
/// domains together).
pub fn pipeline_lines(edge: (&Scrape, &Scrape), handler: (&Scrape, &Scrape)) -> Vec<String> {
    let ms = |s: f64| s * 1000.0;
    let mut lines = Vec::new();
    if let Some((n, mean, p50, p99)) = edge
        .1
        .histogram_since(edge.0, "tablewire_edge_publish_latency_seconds")
    {
        lines.push(format!(
            "edge: command stored by JetStream: mean {:.2} ms, p50 <= {:.2} ms, p99 <= {:.2} ms ({n:.0})",
            ms(mean),
            ms(p50),
            ms(p99)
        ));
    }
    let frames = edge
        .1
        .counter_family_since(edge.0, "tablewire_edge_messages_out_total");
    let socket_writes = edge
        .1
        .counter_since(edge.0, "tablewire_edge_socket_writes_total");
    if socket_writes > 0.0 {
        lines.push(format!(
            "edge: {frames:.0} frames in {socket_writes:.0} socket writes ({:.2} per write)",
            frames / socket_writes
        ));
    }
    if let Some((n, mean, _, p99)) = handler
        .1
        .histogram_since(handler.0, "tablewire_handler_batch_size")
    {
        let writes = handler
            .1
            .counter_family_since(handler.0, "tablewire_handler_state_writes_total");
        let applied = handler
            .1
            .counter_family_since(handler.0, "tablewire_handler_applied_total");
        lines.push(format!(
            "handler: {n:.0} batches of mean {mean:.1} (p99 <= {p99:.0}) commands; {applied:.0} applied in {writes:.0} state writes"
        ));
    }
    if let Some((n, mean, p50, p99)) = handler
        .1
        .histogram_since(handler.0, "tablewire_handler_apply_latency_seconds")
    {
        lines.push(format!(
            "handler: accepted -> state written: mean {:.2} ms, p50 <= {:.2} ms, p99 <= {:.2} ms ({n:.0})",
            ms(mean),
            ms(p50),
            ms(p99)
        ));
    }
    lines
}
