//! A thin ClickHouse client over HTTP that stays within what Debian's 18.16
//! server understands: plain `RowBinary` (no `...WithNamesAndTypes`) and, for
//! the writer's `usage_records` inserts, `Native` ([`super::native`]); settings
//! as URL parameters, no compression negotiation.

use std::future::Future;
use std::sync::Arc;
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

    /// The call failed on the way to or from the server (refused, reset,
    /// closed early, timed out), not with an answer from it: the same call
    /// may well succeed on a new connection.
    pub fn is_connection_error(&self) -> bool {
        use clickhouse::error::Error;
        match self {
            StoreError::Clickhouse { source, .. } => matches!(source, Error::Network(_) | Error::TimedOut),
            StoreError::Timeout { .. } => true,
            StoreError::Migration { source, .. } => source.is_connection_error(),
            StoreError::Unexpected { .. } => false,
        }
    }
}

/// How often a read that failed on the connection is sent again, and the
/// pause before the first resend (doubled after each).
const READ_RETRIES: u32 = 3;
const READ_FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// A connection to one ClickHouse database.
///
/// Every call is bounded: inserts by `insert_timeout`, everything else (reads,
/// DDL, ping) by `query_timeout`. A call still running then is dropped, which
/// closes its connection, and fails with [`StoreError::Timeout`].
///
/// Cloned into every account's sync: a clone is one shared pointer (two
/// `clickhouse::Client`s with their URL, credentials and settings were ~1 KB
/// per account).
#[derive(Clone)]
pub struct ClickhouseClient(Arc<Shared>);

struct Shared {
    inner: clickhouse::Client,
    /// Client without a default database, for `CREATE DATABASE`.
    server: clickhouse::Client,
    /// For messages only: a password written in the URL (`user:pass@`) is
    /// stripped, so `migrate`, errors and `/readyz` never print it.
    url: String,
    database: String,
    insert_timeout: Duration,
    query_timeout: Duration,
    /// Narrow scope reads queued for batching, shared by every clone.
    scope_reads: super::scope_reads::ScopeReads,
    /// What it was made from, for [`ClickhouseClient::with_own_connections`].
    config: ClickhouseConfig,
}

impl std::fmt::Debug for ClickhouseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of Debug output.
        f.debug_struct("ClickhouseClient")
            .field("url", &self.0.url)
            .field("database", &self.0.database)
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
        Self(Arc::new(Shared {
            inner,
            server,
            url: crate::config::secret::strip_url_password(&config.url),
            database: config.database.clone(),
            insert_timeout: config.insert_timeout,
            query_timeout: config.query_timeout,
            scope_reads: Default::default(),
            config: config.clone(),
        }))
    }

    /// A client of the same server and settings with connections of its
    /// own. A pooled connection is driven by the runtime it was opened on,
    /// so the writer, whose inserts run on a thread of their own, must not
    /// take one opened by a read on the actix thread.
    pub fn with_own_connections(&self) -> Self {
        Self::new(&self.0.config)
    }

    pub fn scope_reads(&self) -> &super::scope_reads::ScopeReads {
        &self.0.scope_reads
    }

    pub fn database(&self) -> &str {
        &self.0.database
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    fn err(&self, source: clickhouse::error::Error) -> StoreError {
        StoreError::Clickhouse {
            url: self.0.url.clone(),
            source,
        }
    }

    /// A query on our database, for [`Self::fetch_all`] and
    /// [`Self::fetch_optional`]; `?` placeholders are filled by `bind`.
    pub(crate) fn query(&self, sql: &str) -> clickhouse::query::Query {
        self.0.inner.query(sql)
    }

    /// All rows of a SELECT (see [`Self::read`]); `what` names it in errors.
    pub(crate) async fn fetch_all<T>(&self, what: &str, query: clickhouse::query::Query) -> Result<Vec<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.read(what, || query.clone().fetch_all::<T>()).await
    }

    /// At most one row of a SELECT (see [`Self::read`]).
    pub(crate) async fn fetch_optional<T>(
        &self,
        what: &str,
        query: clickhouse::query::Query,
    ) -> Result<Option<T>, StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.read(what, || query.clone().fetch_optional::<T>()).await
    }

    /// Runs `work` for at most `limit`; the one place calls get their timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        limit: Duration,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                url: self.0.url.clone(),
                what: what.to_string(),
                secs: limit.as_secs(),
            }),
        }
    }

    /// A read: an idempotent SELECT, so one that failed on the connection
    /// (refused, reset, closed early) is sent again, a few times with short
    /// backoff. Server errors are not retried. `query_timeout` bounds the
    /// whole read, resends included: a server that accepts but never answers
    /// fails once, after `query_timeout`, not once per attempt.
    async fn read<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let work = async {
            let mut delay = READ_FIRST_BACKOFF;
            let mut retries = 0;
            loop {
                match attempt().await.map_err(|e| self.err(e)) {
                    Err(err) if retries < READ_RETRIES && err.is_connection_error() => {
                        retries += 1;
                        tracing::debug!(what, error = %err, retry = retries, "ClickHouse read failed on the connection; sending it again");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                    result => return result,
                }
            }
        };
        self.bounded(what, self.0.query_timeout, work).await
    }

    /// A statement that returns nothing (DDL, ALTER), bounded by
    /// `query_timeout` and not retried.
    async fn run(&self, client: &clickhouse::Client, sql: &str) -> Result<(), StoreError> {
        let work = async { client.query(sql).execute().await.map_err(|e| self.err(e)) };
        self.bounded(&statement_head(sql), self.0.query_timeout, work).await
    }

    /// Runs one statement; `{db}` in it is replaced by the database name.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.execute_for(sql, self.0.query_timeout).await
    }

    /// [`Self::execute`] with its own time limit (a migration's table copy).
    pub async fn execute_for(&self, sql: &str, limit: Duration) -> Result<(), StoreError> {
        let sql = sql.replace("{db}", &self.0.database);
        let work = async { self.0.inner.query(&sql).execute().await.map_err(|e| self.err(e)) };
        self.bounded(&statement_head(&sql), limit, work).await
    }

    pub async fn create_database(&self) -> Result<(), StoreError> {
        let sql = format!("CREATE DATABASE IF NOT EXISTS {}", self.0.database);
        self.run(&self.0.server, &sql).await
    }

    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.0.database);
        self.run(&self.0.server, &sql).await
    }

    /// `(major, minor)` of the server, e.g. `(18, 16)`.
    pub async fn server_version(&self) -> Result<(u32, u32), StoreError> {
        #[derive(Deserialize, clickhouse::Row)]
        struct Version {
            version: String,
        }
        let query = self.0.server.query("SELECT version() AS version");
        let row: Version = self
            .read("server version", || query.clone().fetch_one::<Version>())
            .await?;
        parse_version(&row.version).ok_or_else(|| StoreError::Unexpected {
            url: self.0.url.clone(),
            detail: format!("cannot read server version '{}'", row.version),
        })
    }

    /// Inserts typed rows into a table of ours as one INSERT (RowBinary),
    /// bounded by `insert_timeout` and never retried here (the writer decides
    /// that). The insert is all or nothing for batches under ClickHouse's
    /// block size; a timeout leaves it unknown whether it landed, which the
    /// next diff repairs.
    pub async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Sync,
    {
        self.insert_iter(table, rows.iter(), rows.len()).await
    }

    /// [`Self::insert_rows`] for `count` rows borrowed from wherever they are
    /// (the writer's batch is many senders' vectors): none is copied on the
    /// way to the wire.
    pub async fn insert_iter<'r, T, I>(&self, table: &str, rows: I, count: usize) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + 'r,
        I: Iterator<Item = &'r T> + Send,
    {
        if count == 0 {
            return Ok(());
        }
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Unexpected {
                url: self.0.url.clone(),
                detail: format!("'{table}' is not a table name of ours"),
            });
        }
        let work = async {
            // Unescaped: our table names are plain identifiers (checked
            // above), and the statement stays `INSERT INTO usage_records(...)`.
            let mut insert = self
                .0
                .inner
                .insert_unescaped::<T>(table)
                .await
                .map_err(|e| self.err(e))?;
            for row in rows {
                insert.write(row).await.map_err(|e| self.err(e))?;
            }
            insert.end().await.map_err(|e| self.err(e))
        };
        let what = format!("insert of {count} rows into {table}");
        self.bounded(&what, self.0.insert_timeout, work).await
    }

    /// [`Self::insert_iter`] for `usage_records`, in the Native format
    /// ([`super::native`]): the server takes it column by column, for ~20%
    /// less of its CPU than the same rows as RowBinary.
    pub async fn insert_usage<'r>(&self, rows: impl Iterator<Item = &'r UsageRow>) -> Result<(), StoreError> {
        use super::native::{UsageBlocks, BLOCK_ROWS};
        // Gathered before the first await: a future holding the caller's
        // iterator (closures over the writer's batch) is not `Send`.
        let rows: Vec<&UsageRow> = rows.collect();
        if rows.is_empty() {
            return Ok(());
        }
        let work = async {
            let sql = format!(
                "INSERT INTO usage_records({}) FORMAT Native",
                UsageRow::COLUMNS.join(",")
            );
            let mut insert = self.0.inner.insert_formatted_with(sql);
            let (mut blocks, mut bytes_per_row) = (UsageBlocks::default(), 0);
            for block in rows.chunks(BLOCK_ROWS) {
                let mut out = Vec::with_capacity(block.len() * bytes_per_row + 4096);
                blocks.encode(block, &mut out);
                bytes_per_row = out.len() / block.len();
                insert.send(out.into()).await.map_err(|e| self.err(e))?;
            }
            insert.end().await.map_err(|e| self.err(e))
        };
        let what = format!("insert of {} rows into usage_records", rows.len());
        self.bounded(&what, self.0.insert_timeout, work).await
    }

    /// Runs one SELECT and returns its answer as text in `format` (e.g.
    /// `TabSeparatedWithNamesAndTypes`), bounded and resent on a connection
    /// failure like every read. For reports whose columns the caller does not
    /// know in advance (`export`).
    pub async fn fetch_text(&self, what: &str, sql: &str, format: &str) -> Result<String, StoreError> {
        let text = self
            .read(what, || async {
                let mut cursor = self.0.inner.query(sql).fetch_bytes(format)?;
                cursor.collect().await
            })
            .await?;
        String::from_utf8(text.to_vec()).map_err(|e| StoreError::Unexpected {
            url: self.0.url.clone(),
            detail: format!("{what}: the answer is not UTF-8: {e}"),
        })
    }

    /// Whether the server answers at all (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let query = self.0.server.query("SELECT 1");
        self.read("ping", || query.clone().execute()).await
    }
}

/// The first words of a statement, to name it in a timeout error.
fn statement_head(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().take(4).collect();
    words.join(" ")
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
    fn a_password_in_the_url_is_never_shown() {
        let config = crate::config::ClickhouseConfig {
            url: "http://tokentra:pw-FAKE-TEST-123@127.0.0.1:1".into(),
            database: "tokentra".into(),
            user: "default".into(),
            password: None,
            insert_timeout: std::time::Duration::from_secs(1),
            query_timeout: std::time::Duration::from_secs(1),
        };
        let client = super::ClickhouseClient::new(&config);
        assert!(!client.url().contains("pw-FAKE-TEST-123"), "{}", client.url());
        assert!(!format!("{client:?}").contains("pw-FAKE-TEST-123"));
        let err = super::StoreError::Timeout {
            url: client.url().to_string(),
            what: "ping".into(),
            secs: 1,
        };
        assert!(!err.to_string().contains("pw-FAKE-TEST-123"), "{err}");
    }

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
    fn connection_failures_are_told_from_answers() {
        use clickhouse::error::Error;
        let ch = |source| super::StoreError::Clickhouse {
            url: "u".into(),
            source,
        };
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(ch(Error::Network(Box::new(reset))).is_connection_error());
        assert!(ch(Error::TimedOut).is_connection_error());
        let timeout = super::StoreError::Timeout {
            url: "u".into(),
            what: "read".into(),
            secs: 1,
        };
        assert!(timeout.is_connection_error());
        // The server answered: retrying the same call on a new connection
        // gets the same answer.
        assert!(!ch(Error::BadResponse(
            "Code: 60, e.displayText() = DB::Exception: Table t.x doesn't exist".into()
        ))
        .is_connection_error());
        assert!(!ch(Error::BadResponse("502 Bad Gateway".into())).is_connection_error());
        assert!(!ch(Error::NotEnoughData).is_connection_error());
        let unexpected = super::StoreError::Unexpected {
            url: "u".into(),
            detail: "d".into(),
        };
        assert!(!unexpected.is_connection_error());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let wrapped = super::StoreError::Migration {
            version: 1,
            name: "m".into(),
            source: Box::new(ch(Error::Network(Box::new(refused)))),
        };
        assert!(wrapped.is_connection_error());
    }

    fn client_at(url: String, timeout: std::time::Duration) -> super::ClickhouseClient {
        super::ClickhouseClient::new(&crate::config::ClickhouseConfig {
            url,
            database: "tokentra".into(),
            user: "default".into(),
            password: None,
            insert_timeout: timeout,
            query_timeout: timeout,
        })
    }

    /// A server that accepts connections and never answers: every kind of
    /// call gives up with `Timeout`, reads included.
    #[tokio::test]
    async fn calls_to_a_server_that_never_answers_time_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        let client = client_at(url, std::time::Duration::from_secs(1));
        let is_timeout = |r: Result<_, super::StoreError>| matches!(r, Err(super::StoreError::Timeout { .. }));
        let (read, watermark, ping, ddl) = tokio::join!(
            client.server_version(),
            crate::store::state::read_watermark(&client, "c"),
            client.ping(),
            client.execute("CREATE TABLE {db}.t (x UInt8) ENGINE = Memory"),
        );
        let run = crate::store::state::SyncRunRow::default();
        let insert = client.insert_rows("sync_runs", &[run]).await;
        assert!(
            matches!(&read, Err(super::StoreError::Timeout { what, .. }) if what == "server version"),
            "{read:?}"
        );
        assert!(is_timeout(watermark.map(|_| ())), "watermark read");
        assert!(is_timeout(ping), "ping");
        assert!(is_timeout(ddl), "DDL");
        assert!(is_timeout(insert), "insert");
    }

    /// Nothing listens: the read is sent a few times, then fails as a
    /// connection error (not a timeout: the budget was not spent).
    #[tokio::test]
    async fn a_refused_read_fails_as_a_connection_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = client_at(format!("http://127.0.0.1:{port}"), std::time::Duration::from_secs(10));
        let err = client.server_version().await.unwrap_err();
        assert!(
            matches!(err, super::StoreError::Clickhouse { .. }) && err.is_connection_error(),
            "{err:?}"
        );
        assert!(!err.is_rejection());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(super::parse_version("18.16.1"), Some((18, 16)));
        assert_eq!(super::parse_version("24.8.4.13"), Some((24, 8)));
        assert_eq!(super::parse_version("garbage"), None);
    }
}
