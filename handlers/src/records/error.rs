//! Why a record was not written ([`WriteError`]): the SQL writer ([`super`]) retries the one
//! and parks the other; every kind's writer returns it, and reads its record with [`read`].

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
            // A value SQL could not decode: writing it again would fail the same way.
            sqlx::Error::Decode(why) => WriteError::Unreadable(why.to_string()),
            other => WriteError::Sql(other),
        }
    }
}

/// Reads a record's data as its kind's schemas type `T`, or refuses it as unreadable (naming
/// the kind and the field), so that a record missing a field is parked, never stored with an
/// empty value.
pub(crate) fn read<'a, T: serde::Deserialize<'a>>(
    kind: &str,
    data: &'a serde_json::Value,
) -> Result<T, WriteError> {
    T::deserialize(data).map_err(|e| WriteError::Unreadable(format!("{kind}: {e}")))
}
