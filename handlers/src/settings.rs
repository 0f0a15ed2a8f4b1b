//! The handler's flags ([`HandlerSettings`]), which `tablewire handler` and `dev` parse and the
//! runtime's and collab's `Default`s are built from: each default is written once, here.

use crate::collab::webhook::Webhook;
use crate::http_client::UrlError;
use crate::rate::WriteRate;
use std::time::Duration;
use tablewire_nats::topology::at_least_one;
use tablewire_schemas::Domain;

/// The handler's flags (environment variables, config-file keys) shared by `tablewire handler`
/// and `dev`, with the one copy of their defaults: [`crate::Config::default`] and
/// [`crate::collab::Settings::default`] are built from them.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct HandlerSettings {
    /// Most commands applied per batch.
    #[arg(long, env = "TABLEWIRE_BATCH_SIZE", default_value_t = 256, value_parser = at_least_one::<usize>)]
    pub batch_size: usize,
    /// Most keys of a batch applied concurrently.
    #[arg(long, env = "TABLEWIRE_KEY_CONCURRENCY", default_value_t = 64, value_parser = at_least_one::<usize>)]
    pub key_concurrency: usize,
    /// Where finished records go: sqlite://path or postgres://…
    #[arg(long, env = "TABLEWIRE_DATABASE_URL", default_value = crate::store::DEFAULT_URL)]
    pub database_url: String,
    /// Do not run the SQL writer in this process (records wait in their stream).
    #[arg(long, env = "TABLEWIRE_NO_RECORDS")]
    pub no_records: bool,
    /// Collab rooms: seconds without a change before a room is archived and removed.
    #[arg(long, env = "TABLEWIRE_COLLAB_IDLE_TIMEOUT_SECS", default_value_t = 7200, value_parser = at_least_one::<u64>)]
    pub collab_idle_timeout_secs: u64,
    /// Collab rooms: changes one room accepts per second, sustained.
    #[arg(long, env = "TABLEWIRE_COLLAB_ROOM_RATE", default_value_t = 500, value_parser = at_least_one::<u32>)]
    pub collab_room_rate: u32,
    /// Collab rooms: changes one room accepts at once.
    #[arg(long, env = "TABLEWIRE_COLLAB_ROOM_BURST", default_value_t = 1000, value_parser = at_least_one::<u32>)]
    pub collab_room_burst: u32,
    /// POS: writes (orders, status changes) one restaurant's book accepts per second, across
    /// every edge and handler; more get RATE_LIMITED.
    #[arg(long, env = "TABLEWIRE_TENANT_ORDER_RATE", default_value_t = crate::pos::TENANT_RATE.per_second, value_parser = at_least_one::<u32>)]
    pub tenant_order_rate: u32,
    /// POS: writes one restaurant's book accepts at once.
    #[arg(long, env = "TABLEWIRE_TENANT_ORDER_BURST", default_value_t = crate::pos::TENANT_RATE.burst, value_parser = at_least_one::<u32>)]
    pub tenant_order_burst: u32,
    /// Events: `POST /api/events` one restaurant's feed accepts per second, across every edge
    /// and handler; more get RATE_LIMITED.
    #[arg(long, env = "TABLEWIRE_TENANT_EVENT_RATE", default_value_t = crate::events::TENANT_RATE.per_second, value_parser = at_least_one::<u32>)]
    pub tenant_event_rate: u32,
    /// Events: events one restaurant's feed accepts at once.
    #[arg(long, env = "TABLEWIRE_TENANT_EVENT_BURST", default_value_t = crate::events::TENANT_RATE.burst, value_parser = at_least_one::<u32>)]
    pub tenant_event_burst: u32,
    /// Collab rooms: POST every finalized order to this http:// or https:// URL (retried until
    /// it answers 2xx), signed in `X-Tablewire-Signature: sha256=<HMAC-SHA256 hex>`.
    #[arg(long, env = "TABLEWIRE_COLLAB_WEBHOOK_URL")]
    pub collab_webhook_url: Option<String>,
    /// The HMAC key of the webhook signature.
    #[arg(long, env = "TABLEWIRE_COLLAB_WEBHOOK_SECRET", default_value = "")]
    pub collab_webhook_secret: String,
}

impl Default for HandlerSettings {
    /// The flags' defaults (environment variables are not read).
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let command = HandlerSettings::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(["defaults"]);
        // The defaults above parse by construction (a unit test checks it).
        HandlerSettings::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Default for crate::Config {
    /// Every domain, with the flags' defaults.
    fn default() -> Self {
        HandlerSettings::default().without_webhook(Domain::ALL.to_vec(), None)
    }
}

impl Default for crate::collab::Settings {
    /// The flags' defaults.
    fn default() -> Self {
        HandlerSettings::default().collab()
    }
}

impl HandlerSettings {
    /// The runtime's configuration for `domains`; fails on a webhook URL that is not `http://`
    /// or `https://`, so a misconfigured handler does not start.
    pub fn runtime_config(
        &self,
        domains: Vec<Domain>,
        worker_id: Option<String>,
    ) -> Result<crate::Config, UrlError> {
        let webhook = self
            .collab_webhook_url
            .as_deref()
            .map(|url| Webhook::new(url, self.collab_webhook_secret.clone()))
            .transpose()?;
        Ok(crate::Config {
            collab_webhook: webhook,
            ..self.without_webhook(domains, worker_id)
        })
    }

    pub(crate) fn without_webhook(
        &self,
        domains: Vec<Domain>,
        worker_id: Option<String>,
    ) -> crate::Config {
        crate::Config {
            domains,
            worker_id,
            batch_size: self.batch_size,
            key_concurrency: self.key_concurrency,
            collab: self.collab(),
            collab_webhook: None,
            tenant_orders: WriteRate::new(self.tenant_order_rate, self.tenant_order_burst),
            tenant_events: WriteRate::new(self.tenant_event_rate, self.tenant_event_burst),
        }
    }

    /// Collab's settings.
    pub fn collab(&self) -> crate::collab::Settings {
        crate::collab::Settings {
            idle_timeout: Duration::from_secs(self.collab_idle_timeout_secs),
            room_rate: self.collab_room_rate,
            room_burst: self.collab_room_burst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_flags_defaults() {
        let config = crate::Config::default();
        assert_eq!(config.batch_size, 256);
        assert_eq!(config.key_concurrency, 64);
        assert_eq!(config.domains, Domain::ALL.to_vec());
        assert_eq!(config.tenant_orders, crate::pos::TENANT_RATE);
        assert_eq!(
            crate::collab::Settings::default().idle_timeout,
            Duration::from_secs(7200)
        );
    }
}
