//! The single-component subcommands: `edge`, `handler`, `provision`, `token`, and the
//! pieces `dev` reuses (shutdown on Ctrl-C or SIGTERM, edge and handler config from flags).

use crate::cli::{
    AuthArgs, EdgeArgs, EdgeSettings, HandlerArgs, HandlerSettings, ProvisionArgs, TokenArgs,
};
use anyhow::{Context, bail};
use std::sync::Arc;
use tablewire_schemas::{Claims, Domain};
use tokio::sync::watch;

/// A watch that turns true on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// The edge configuration of `edge` and `dev`: `settings` and the credentials of `auth` (the
/// public key file already checked readable by [`check_public_key`]).
pub fn edge_config(
    nats_url: &str,
    settings: &EdgeSettings,
    auth: &AuthArgs,
    edge_id: Option<String>,
) -> tablewire_edge::Config {
    let auth = tablewire_edge::AuthConfig {
        bearer_secret: auth.auth_secret.clone(),
        jwt_secret: auth.jwt_secret.clone(),
        jwt_public_key_pem: auth
            .jwt_public_key
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok()),
    };
    settings.config(nats_url, auth, edge_id)
}

/// The handler runtime's configuration; fails on a webhook URL that is not `http://` or
/// `https://`, so a misconfigured handler does not start.
pub fn handler_config(
    settings: &HandlerSettings,
    domains: Vec<Domain>,
    worker_id: Option<String>,
) -> anyhow::Result<tablewire_handlers::Config> {
    settings
        .runtime_config(domains, worker_id)
        .context("--collab-webhook-url")
}

pub async fn connect(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    tablewire_nats::connect(url, name)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// Fails when `--jwt-public-key` names a file that cannot be read as a usable public key.
pub fn check_public_key(auth: &AuthArgs) -> anyhow::Result<()> {
    if let Some(path) = &auth.jwt_public_key {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --jwt-public-key {}", path.display()))?;
        tablewire_edge::auth::Auth::try_new(&tablewire_edge::AuthConfig {
            jwt_public_key_pem: Some(pem),
            ..Default::default()
        })
        .map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    }
    Ok(())
}

pub async fn edge(args: EdgeArgs) -> anyhow::Result<()> {
    check_public_key(&args.auth)?;
    if args.auth.auth_secret.is_none() && args.auth.jwt_secret.is_none() {
        tracing::warn!(
            "neither --auth-secret nor --jwt-secret is set: authenticated endpoints refuse every request"
        );
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let config = edge_config(
        &args.nats.nats_url,
        &args.edge,
        &args.auth,
        args.edge_id.clone(),
    );
    let edge = tablewire_edge::Edge::bind(config, &mut registry).await?;
    let shutdown = shutdown_signal();
    edge.run(Arc::new(registry), shutdown).await;
    Ok(())
}

pub fn parse_domains(names: &[String]) -> anyhow::Result<Vec<Domain>> {
    let mut domains = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if name == "all" {
            return Ok(Domain::ALL.to_vec());
        }
        match Domain::from_name(name) {
            Some(d) if !domains.contains(&d) => domains.push(d),
            Some(_) => {}
            None => bail!(
                "unknown domain {name:?}; known: {}",
                Domain::ALL
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    if domains.is_empty() {
        bail!("no domain given");
    }
    Ok(domains)
}

pub async fn transcriber(args: crate::cli::TranscriberArgs) -> anyhow::Result<()> {
    let client = connect(&args.nats.nats_url, "tablewire-transcriber").await?;
    let config = tablewire_handlers::transcriber::Config {
        url: args.url,
        model: args.model,
        api_key: args.api_key,
        file_name: args.file_name,
        ..Default::default()
    };
    tablewire_handlers::transcriber::run(client, config, shutdown_signal()).await?;
    Ok(())
}

pub async fn handler(args: HandlerArgs) -> anyhow::Result<()> {
    let domains = parse_domains(&args.domain)?;
    let config = handler_config(&args.handler, domains, args.worker_id.clone())?;
    let client = connect(&args.nats.nats_url, "tablewire-handler").await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = tablewire_handlers::metrics::Metrics::new(&mut registry);
    let shutdown = shutdown_signal();
    let records = (!args.handler.no_records).then(|| {
        tokio::spawn(tablewire_handlers::records::run(
            client.clone(),
            args.handler.database_url.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    if args.metrics_listen.is_some() {
        let backlog = crate::backlog_metrics::BacklogMetrics::new(&mut registry);
        tokio::spawn(backlog.run(client.clone(), shutdown.clone()));
    }
    let registry = Arc::new(registry);
    if let Some(addr) = args.metrics_listen {
        let (registry, shutdown) = (registry.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::metrics_http::serve(addr, registry, shutdown).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
    }
    tablewire_handlers::run(client, config, metrics, shutdown).await?;
    if let Some(records) = records {
        let _ = records.await;
    }
    Ok(())
}

pub async fn provision(args: ProvisionArgs) -> anyhow::Result<()> {
    let client = connect(&args.nats.nats_url, "tablewire-provision").await?;
    let js = async_nats::jetstream::new(client);
    let topology = args.topology.topology();
    tablewire_nats::provision(&js, Domain::ALL, &topology).await?;
    let mut partitions = Vec::new();
    for domain in Domain::ALL {
        let stream = tablewire_nats::resource::input_stream(*domain);
        let count = tablewire_nats::provision::current_partitions(&js, &stream).await;
        partitions.push(format!("{domain} {}", count.unwrap_or(0)));
    }
    println!(
        "provisioned {} domain(s), {} replica(s); partitions: {}",
        Domain::ALL.len(),
        topology.replicas,
        partitions.join(", ")
    );
    Ok(())
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let now = tablewire_edge::auth::now_secs();
    let claims = Claims {
        sub: args.sub,
        tenant: Some(args.tenant),
        role: Some(args.role),
        exp: now + args.ttl_secs,
        iat: Some(now),
    };
    println!("{}", tablewire_edge::mint(&args.jwt_secret, &claims)?);
    Ok(())
}
