//! A thin ClickHouse client over HTTP that stays within what Debian's 18.16
//! server understands: plain `RowBinary` (no `...WithNamesAndTypes`), settings as
//! URL parameters, no compression negotiation.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ClickhouseConfig;
use crate::normalize::schema::UsageRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse at {url}: {source}")]
    Clickhouse {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("ClickHouse at {url}: {what} timed out after {secs}s")]
    Timeout { url: String, what: String, secs: u64 },
    #[error("ClickHouse at {url}: {detail}")]
    Unexpected { url: String, detail: String },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: String,
        #[source]
        source: Box<StoreError>,
    },
}

/// ClickHouse error codes that mean "these rows or this statement are wrong":
/// the same insert fails the same way however often it is retried.
/// (Missing tables, authentication and resource errors are not here: an
/// operator can fix those, so retrying until they do is right.)
const REJECTION_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    16,  // NO_SUCH_COLUMN_IN_TABLE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF
    33,  // CANNOT_READ_ALL_DATA
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    407, // DECIMAL_OVERFLOW
];

impl StoreError {
    /// The server's error code, when it answered with one.
    pub fn server_code(&self) -> Option<u32> {
        let StoreError::Clickhouse {
            source: clickhouse::error::Error::BadResponse(text),
            ..
        } = self
        else {
            return None;
        };
        let rest = &text[text.find("Code: ")? + 6..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    /// The server refused the data or statement itself; retrying cannot help.
    pub fn is_rejection(&self) -> bool {
        self.server_code().is_some_and(|code| REJECTION_CODES.contains(&code))
    }
}

/// A connection to one ClickHouse database.
#[derive(Clone)]
pub struct ClickhouseClient {
    inner: clickhouse::Client,
    /// Client without a default database, for `CREATE DATABASE`.
    server: clickhouse::Client,
    url: String,
    database: String,
    insert_timeout: Duration,
}

impl std::fmt::Debug for ClickhouseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of Debug output.
        f.debug_struct("ClickhouseClient")
            .field("url", &self.url)
            .field("database", &self.database)
            .finish()
    }
}

impl ClickhouseClient {
    pub fn new(config: &ClickhouseConfig) -> Self {
        // No validation: it reads and writes `RowBinaryWithNamesAndTypes`,
        // which ClickHouse 18.16 lacks. Plain `RowBinary` works everywhere;
        // our row structs match the migrations field for field.
        let mut server = clickhouse::Client::default()
            .with_url(config.url.as_str())
            .with_user(config.user.as_str())
            .with_validation(false);
        if let Some(password) = &config.password {
            server = server.with_password(password.expose());
        }
        let inner = server.clone().with_database(config.database.as_str());
        Self {
            inner,
            server,
            url: config.url.clone(),
            database: config.database.clone(),
            insert_timeout: config.insert_timeout,
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The raw client, for typed queries in this module's siblings.
    pub(crate) fn raw(&self) -> &clickhouse::Client {
        &self.inner
    }

    pub(crate) fn err(&self, source: clickhouse::error::Error) -> StoreError {
        StoreError::Clickhouse {
            url: self.url.clone(),
            source,
        }
    }

    /// Runs one statement; `{db}` in it is replaced by the database name.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sql.replace("{db}", &self.database);
        self.inner.query(&sql).execute().await.map_err(|e| self.err(e))
    }

    pub async fn create_database(&self) -> Result<(), StoreError> {
        let sql = format!("CREATE DATABASE IF NOT EXISTS {}", self.database);
        self.server.query(&sql).execute().await.map_err(|e| self.err(e))
    }

    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.database);
        self.server.query(&sql).execute().await.map_err(|e| self.err(e))
    }

    /// `(major, minor)` of the server, e.g. `(18, 16)`.
    pub async fn server_version(&self) -> Result<(u32, u32), StoreError> {
        #[derive(Deserialize, clickhouse::Row)]
        struct Version {
            version: String,
        }
        let row: Version = self
            .server
            .query("SELECT version() AS version")
            .fetch_one()
            .await
            .map_err(|e| self.err(e))?;
        parse_version(&row.version).ok_or_else(|| StoreError::Unexpected {
            url: self.url.clone(),
            detail: format!("cannot read server version '{}'", row.version),
        })
    }

    /// Inserts rows into `usage_records` as one INSERT (RowBinary). The insert
    /// is all or nothing for batches under ClickHouse's block size; a timeout
    /// leaves it unknown whether it landed, which the next diff repairs.
    pub async fn insert_usage_rows(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let work = async {
            // Unescaped, as before 0.14: the statement stays
            // `INSERT INTO usage_records(...)`.
            let mut insert = self
                .inner
                .insert_unescaped::<UsageRow>("usage_records")
                .await
                .map_err(|e| self.err(e))?;
            for row in rows {
                insert.write(row).await.map_err(|e| self.err(e))?;
            }
            insert.end().await.map_err(|e| self.err(e))
        };
        match tokio::time::timeout(self.insert_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                url: self.url.clone(),
                what: format!("insert of {} rows", rows.len()),
                secs: self.insert_timeout.as_secs(),
            }),
        }
    }

    /// Inserts typed rows into another table of ours.
    pub async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.inner.insert_unescaped::<T>(table).await.map_err(|e| self.err(e))?;
        for row in rows {
            insert.write(row).await.map_err(|e| self.err(e))?;
        }
        insert.end().await.map_err(|e| self.err(e))
    }

    /// Whether the server answers at all (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.server.query("SELECT 1").execute().await.map_err(|e| self.err(e))
    }
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rejections_are_told_from_outages_by_server_code() {
        let bad = |text: &str| super::StoreError::Clickhouse {
            url: "u".into(),
            source: clickhouse::error::Error::BadResponse(text.into()),
        };
        let parse = bad("Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected ( before: x");
        assert_eq!(parse.server_code(), Some(27));
        assert!(parse.is_rejection());
        assert!(!bad("Code: 252, e.displayText() = DB::Exception: Too many parts").is_rejection());
        assert!(!bad("Code: 60, e.displayText() = DB::Exception: Table t.usage_records doesn't exist").is_rejection());
        assert!(!bad("502 Bad Gateway").is_rejection());
        let timeout = super::StoreError::Timeout {
            url: "u".into(),
            what: "insert".into(),
            secs: 1,
        };
        assert!(!timeout.is_rejection());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(super::parse_version("18.16.1"), Some((18, 16)));
        assert_eq!(super::parse_version("24.8.4.13"), Some((24, 8)));
        assert_eq!(super::parse_version("garbage"), None);
    }
}
