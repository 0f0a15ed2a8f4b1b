//! Every domain a handler can run, one line each, and the handler's [`Config`]: the one place
//! that names the domains' types. `tablewire handler` (through [`run`]), `tablewire dev` and the
//! tests start handlers here.
//!
//! Adding a domain: write its module (a [`Domain`](crate::domain::Domain), with a start hook if
//! it runs something beside its commands) and add one line to [`domains`].

use crate::metrics::Metrics;
use crate::runtime::{self, Registered, RuntimeError};
use tablewire_schemas::Domain as DomainName;
use tokio::sync::watch;

/// How a handler process runs; its `Default` (every domain, the flags' defaults) is in
/// [`crate::settings`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The domains to work for.
    pub domains: Vec<DomainName>,
    /// This worker's id; a unique one is made up when `None`.
    pub worker_id: Option<String>,
    /// Most commands pulled and applied per batch.
    pub batch_size: usize,
    /// Most keys of one batch applied at the same time.
    pub key_concurrency: usize,
    /// Collaborative order rooms: idle expiry and the per-room rate limit.
    pub collab: crate::collab::Settings,
    /// Collaborative orders: post finalized orders here (off when `None`).
    pub collab_webhook: Option<crate::collab::webhook::Webhook>,
    /// Writes one tenant's POS book accepts (orders, status changes), across all workers.
    pub tenant_orders: crate::rate::WriteRate,
    /// Events one tenant's feed accepts from `POST /api/events`, across all workers.
    pub tenant_events: crate::rate::WriteRate,
}

/// Every domain, built from `config`: one line each.
pub fn domains(config: &Config) -> Vec<Registered> {
    vec![
        Registered::new(crate::display::Display),
        Registered::new(crate::events::Events {
            tenant_rate: config.tenant_events,
        }),
        Registered::new(crate::collab::Collab {
            settings: config.collab,
            webhook: config.collab_webhook.clone(),
        }),
        Registered::new(crate::pos::Pos {
            tenant_rate: config.tenant_orders,
        }),
        Registered::new(crate::voice::Voice),
        Registered::new(crate::device::Device),
    ]
}

/// The domains `config.domains` names, in its order.
fn chosen(config: &Config) -> Vec<Registered> {
    let mut all = domains(config);
    let mut chosen = Vec::new();
    for name in &config.domains {
        if let Some(i) = all.iter().position(|d| d.name() == *name) {
            chosen.push(all.swap_remove(i));
        }
    }
    chosen
}

/// Runs handler workers for `config.domains` until `shutdown` resolves; then releases every
/// partition and leaves, so other workers take over at once.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let settings = runtime::Settings {
        worker_id: config.worker_id.clone(),
        batch_size: config.batch_size,
        key_concurrency: config.key_concurrency,
    };
    runtime::run(client, settings, chosen(&config), metrics, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_has_one_line() {
        let config = Config::default();
        let mut names: Vec<DomainName> = domains(&config).iter().map(|d| d.name()).collect();
        names.sort();
        let mut all = DomainName::ALL.to_vec();
        all.sort();
        assert_eq!(names, all);
    }

    #[test]
    fn only_the_configured_domains_run_in_the_configured_order() {
        let config = Config {
            domains: vec![DomainName::Pos, DomainName::Display],
            ..Config::default()
        };
        let names: Vec<DomainName> = chosen(&config).iter().map(|d| d.name()).collect();
        assert_eq!(names, [DomainName::Pos, DomainName::Display]);
    }
}
