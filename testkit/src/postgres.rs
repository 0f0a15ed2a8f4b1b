//! A fresh PostgreSQL database for one test or benchmark, created on a server the caller names
//! and dropped (with its connections) when the guard is dropped. Used by tests/support.

use anyhow::Context;

/// A database of its own on a PostgreSQL server, dropped when this guard is dropped.
pub struct PostgresDb {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

impl PostgresDb {
    /// Creates `tw_test_<random>` through `admin`, a URL of any database on the server with the
    /// right to create databases.
    pub async fn create(admin: &str) -> anyhow::Result<PostgresDb> {
        let name = format!("tw_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin}"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .context("creating a database")?;
        let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
        Ok(PostgresDb {
            url: format!("{base}/{name}"),
            admin: admin.to_string(),
            name,
        })
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped from async code: do it on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
