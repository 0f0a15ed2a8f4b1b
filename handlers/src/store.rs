//! The SQL store: one sqlx pool over SQLite (the default, a file) or PostgreSQL, chosen by the
//! URL, with the migrations in `handlers/migrations/` run at connect. Used by the records
//! writer and by tests that look for records.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::path::Path;
use std::time::Duration;

pub use sqlx::AnyPool as Pool;

/// The default database: a SQLite file under `./.tablewire/`.
pub const DEFAULT_URL: &str = "sqlite://.tablewire/tablewire.db";

/// Opens the database at `url` and brings its schema up to date. Several processes may start
/// at once against one database: SQLite answers the losers of a race for its write lock with
/// "database is locked" and a migration may find another opener's half-way, so the whole
/// open-and-migrate is tried again on contention (a few seconds at most) before giving up.
pub async fn connect(url: &str) -> Result<Pool, sqlx::Error> {
    install_default_drivers();
    let url = prepare_url(url)?;
    let mut attempt: u32 = 0;
    loop {
        match open_and_migrate(&url).await {
            Ok(pool) => return Ok(pool),
            Err(e) if attempt < 20 && is_contention(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "database busy while opening; retrying");
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn open_and_migrate(url: &str) -> Result<Pool, sqlx::Error> {
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        // SQLite has one writer; PostgreSQL takes a few connections well.
        .max_connections(if sqlite { 1 } else { 4 })
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    if sqlite {
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&pool)
            .await?;
    }
    let migrated = sqlx::migrate!("./migrations").run(&pool).await;
    if migrated.is_err() {
        pool.close().await;
    }
    migrated?;
    Ok(pool)
}

/// Whether an error is another opener holding the database for a moment, so that trying again
/// can succeed: SQLite's busy and locked answers (codes 5 and 6 with their extended forms), and
/// a migration that failed to execute because another process was applying the same one.
fn is_contention(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .map(|code| code & 0xff);
            matches!(primary, Some(5 | 6))
                || db.message().contains("database is locked")
                || db.code().as_deref() == Some("23505")
        }
        sqlx::Error::Migrate(migrate) => match migrate.as_ref() {
            sqlx::migrate::MigrateError::Execute(inner) => {
                is_contention(inner) || matches!(inner, sqlx::Error::Database(_))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Makes a SQLite URL create its file (and directory) when missing.
fn prepare_url(url: &str) -> Result<String, sqlx::Error> {
    let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(url.to_string());
    };
    let file = path.split('?').next().unwrap_or(path);
    if file != ":memory:"
        && let Some(dir) = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(prepare_url("postgres://x/y").expect("pg"), "postgres://x/y");
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub/t.db", dir.path().display());
        assert_eq!(
            prepare_url(&url).expect("sqlite"),
            format!("{url}?mode=rwc")
        );
        assert!(dir.path().join("sub").is_dir());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_migrating_at_once_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/race.db", dir.path().display());
        let opens = (0..8).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect(&url).await.map(|_| ()) })
        });
        for open in futures::future::join_all(opens).await {
            open.expect("task")
                .expect("every opener ends with a migrated database");
        }
    }

    #[tokio::test]
    async fn migrations_run_on_sqlite_and_records_are_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .expect("connect");
        for _ in 0..2 {
            sqlx::query("INSERT INTO records (id, kind, tenant, data, stored_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING")
                .bind("r1").bind("k").bind("t").bind("{}").bind(1_i64)
                .execute(&pool).await.expect("insert");
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM records")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(count, 1);
    }
}
