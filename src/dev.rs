//! `tablewire dev`: the whole system in one process. Starts a local nats-server (unless
//! --nats-url) and provisions it with the testkit's functions, runs an edge, every handler and
//! the SQL writer on a SQLite file, and prints where everything is and the credentials to use.
//! Ctrl-C stops it all, the nats-server included.

use crate::cli::DevArgs;
use crate::run::{connect, edge_config, handler_config, shutdown_signal};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tablewire_nats::ServerOptions;
use tablewire_schemas::{Claims, Domain};
use tablewire_testkit::Nats;

/// Secrets made up for development, kept in the data dir so tokens survive restarts.
#[derive(serde::Serialize, serde::Deserialize)]
struct DevSecrets {
    auth_secret: String,
    jwt_secret: String,
}

fn random_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>())
}

fn dev_secrets(dir: &Path) -> anyhow::Result<DevSecrets> {
    let path = dir.join("dev-secrets.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(secrets) = serde_json::from_str(&text)
    {
        return Ok(secrets);
    }
    let secrets = DevSecrets {
        auth_secret: random_secret(),
        jwt_secret: random_secret(),
    };
    std::fs::write(&path, serde_json::to_string_pretty(&secrets)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secrets)
}

pub async fn run(mut args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let secrets = dev_secrets(&args.data_dir)?;
    args.auth.auth_secret.get_or_insert(secrets.auth_secret);
    args.auth.jwt_secret.get_or_insert(secrets.jwt_secret);
    crate::run::check_public_key(&args.auth)?;
    let handler_config = handler_config(&args.handler, Domain::ALL.to_vec(), None)?;

    // Its NATS as the testkit starts every system's (one server here, its store in the data
    // dir); the rest runs in this process rather than as the testkit's child processes, so
    // that `dev` is one process to run, stop and debug.
    let mut server = None;
    let nats_url = match &args.nats_url {
        Some(url) => url.clone(),
        None => {
            let options = ServerOptions {
                store_dir: Some(args.data_dir.join("nats")),
                monitoring: true,
                ..Default::default()
            };
            let started = Nats::start(1, options)
                .await
                .context("cannot start a local nats-server")?;
            let url = started.client_url().to_string();
            server = Some(started);
            url
        }
    };
    let client = connect(&nats_url, "tablewire-dev").await?;
    tablewire_testkit::nats::provision(&nats_url, &args.topology.topology())
        .await
        .context("provisioning failed")?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = tablewire_handlers::metrics::Metrics::new(&mut registry);
    let backlog = crate::backlog_metrics::BacklogMetrics::new(&mut registry);
    let mut config = edge_config(&nats_url, &args.edge, &args.auth, None);
    // Seed 001's client sends no token: in dev, tokenless room connections are tenant `demo`.
    config
        .collab_open_tenant
        .get_or_insert_with(|| "demo".to_string());
    // Seed 003's readers connect with a bare deviceId: `dev` accepts them unless told otherwise.
    config.device_auth = args.edge.device_auth("none");
    let now = tablewire_edge::auth::now_secs();
    let jwt_secret = args.auth.jwt_secret.clone().unwrap_or_default();
    let token = tablewire_edge::mint(
        &jwt_secret,
        &Claims {
            sub: "dev".into(),
            tenant: Some("demo".into()),
            role: Some("service".into()),
            exp: now + 86_400,
            iat: Some(now),
        },
    )?;
    // The screens' sign-in page offers this token (`/app/dev.json`, served under `dev` only).
    config.dev_login = Some(tablewire_edge::config::DevLogin {
        token: token.clone(),
        tenant: "demo".into(),
    });
    let edge = tablewire_edge::Edge::bind(config, &mut registry)
        .await
        .context("the edge cannot start (use --listen to pick another address)")?;
    let addr = edge.local_addr()?;
    let shutdown = shutdown_signal();
    tokio::spawn(backlog.run(client.clone(), shutdown.clone()));

    let database_url = if args.handler.database_url == tablewire_handlers::store::DEFAULT_URL {
        format!("sqlite://{}", args.data_dir.join("tablewire.db").display())
    } else {
        args.handler.database_url.clone()
    };
    let records = (!args.handler.no_records).then(|| {
        tokio::spawn(tablewire_handlers::records::run(
            client.clone(),
            database_url.clone(),
            metrics.clone(),
            shutdown.clone(),
        ))
    });
    let handlers = tokio::spawn(tablewire_handlers::run(
        client.clone(),
        handler_config,
        metrics,
        shutdown.clone(),
    ));
    let edge_task = tokio::spawn(edge.run(Arc::new(registry), shutdown.clone()));

    let auth_secret = args.auth.auth_secret.clone().unwrap_or_default();
    let scheme = if args.edge.tls_cert.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!(
        "\ntablewire dev is up\n\
         \n  edge        {http}://{addr}   (health: {http}://{addr}/healthz, metrics: {http}://{addr}/metrics)\
         \n  nats        {nats_url}{monitor}\
         \n  database    {database_url}\
         \n\n  auth secret {auth_secret}\
         \n  jwt secret  {jwt_secret}\
         \n  dev JWT     {token}\
         \n              (tenant demo, role service, 24 h; mint others with `tablewire token --jwt-secret …`)\
         \n\n  endpoints:\
         \n    displays (seed 000)   {ws}://{addr}/session/{{id}}/display, {http}://{addr}/session/{{id}}/update\
         \n    order rooms (001)     {ws}://{addr}/parties/collaborative_order/{{room}}   (no token: tenant demo)\
         \n    POS/kitchen (002)     {ws}://{addr}/ws/restaurant-pos/demo?token=<dev JWT>, {http}://{addr}/api/orders\
         \n    RFID readers (003)    {ws}://{addr}/ws/device?deviceId=READER1   (no device auth in dev)\
         \n    events (004)          {ws}://{addr}/ws?token=<dev JWT>, {ws}://{addr}/voice-stream, {http}://{addr}/api/events\
         \n\n  screens (the sign-in page offers the dev JWT)\
         \n    sign-in               {http}://{addr}/app/\
         \n    kitchen display       {http}://{addr}/app/kitchen.html\
         \n    device dashboard      {http}://{addr}/app/devices.html\
         \n    order room            {http}://{addr}/app/room.html?room=demo&name=Ana\
         \n    customer display      {http}://{addr}/app/display.html?session=demo\
         \n\n  API documents           {http}://{addr}/openapi.json (HTTP), {http}://{addr}/asyncapi.json (WebSockets, NATS subjects)\
         \n\n  try it:\
         \n    websocat {ws}://{addr}/session/demo/display      (or: npx wscat -c …)\
         \n    curl -X POST {http}://{addr}/session/demo/update -H 'Authorization: Bearer {auth_secret}' \\\
         \n         -H 'Content-Type: application/json' -d '{{\"type\":\"transcription\",\"displayData\":{{\"text\":\"hello\"}}}}'\
         \n    curl {http}://{addr}/session/demo/state\
         \n\n  Ctrl-C stops everything.\n",
        http = scheme.0,
        ws = scheme.1,
        monitor = server
            .as_ref()
            .and_then(|s| s.monitor_url().map(|m| format!("   (monitoring: {m})")))
            .unwrap_or_default(),
    );

    let _ = edge_task.await;
    if let Ok(Err(e)) = handlers.await {
        tracing::warn!(error = %e, "handlers stopped with an error");
    }
    if let Some(records) = records {
        let _ = records.await;
    }
    drop(client);
    if let Some(mut server) = server {
        server.stop().await;
        println!("nats-server stopped");
    }
    Ok(())
}
