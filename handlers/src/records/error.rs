//! Why a record was not written ([`WriteError`]): the SQL writer ([`super`]) retries the one
//! and parks the other; every kind's writer returns it.

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The database refused or could not be reached.
    #[error("SQL: {0}")]
    Sql(sqlx::Error),
    /// The record does not read as its kind: writing it again would fail the same way.
    #[error("unreadable record: {0}")]
    Unreadable(String),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Raised by the writers when a record's data does not read as its kind.
            sqlx::Error::Decode(why) => WriteError::Unreadable(why.to_string()),
            other => WriteError::Sql(other),
        }
    }
}
