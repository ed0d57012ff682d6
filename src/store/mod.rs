//! The embedded SQLite store: streams, destinations (secrets sealed), event logs and final
//! figures; YouTube accounts (tokens sealed), browser sessions, broadcasts and quota units.
//!
//! - The data directory is created with mode 0700 and the database file with mode 0600 before
//!   SQLite opens it (SQLite gives its `-wal`/`-journal` files the database file's mode).
//! - Schema changes are numbered migrations applied in one transaction each; the number reached
//!   is kept in `PRAGMA user_version`, so an old database is upgraded in place at start-up.
//! - Every secret (OAuth tokens, destination URLs with stream keys, YouTube ingestion URLs) is
//!   sealed with [`crypto::SecretBox`] (AES-256-GCM, fresh nonce per write) before it reaches
//!   SQLite; only masked forms are stored in clear.
//! - [`Store::mark_interrupted`] runs at start-up: streams that were active when the server
//!   stopped are marked `ended` with reason `server_restart`, with an event saying so.
//!
//! Calls are short and synchronous behind a mutex; SQLite work here is a few rows per call.

pub mod crypto;

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension as _};

use crate::error::{Error, ErrorCode, Result};
pub use crypto::{CryptoError, KeySource, SecretBox};

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "streamify.db";

/// The states in which a stream is still running (interrupted by a restart).
pub const ACTIVE_STATES: &[&str] = &[
    "created",
    "ready",
    "starting",
    "live",
    "reconnecting",
    "stopping",
];

/// The numbered migrations; `user_version` is the count applied.
const MIGRATIONS: &[&str] = &[
    // 1: streams, destinations, events; YouTube accounts, sessions, broadcasts, quota.
    "CREATE TABLE streams (
        id TEXT PRIMARY KEY,
        owner TEXT,
        state TEXT NOT NULL,
        reason TEXT,
        spec TEXT NOT NULL DEFAULT '{}',
        figures TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER
    );
    CREATE INDEX streams_state ON streams(state);
    CREATE TABLE destinations (
        id TEXT PRIMARY KEY,
        stream_id TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        public TEXT NOT NULL DEFAULT '{}',
        secret BLOB,
        state TEXT NOT NULL,
        error TEXT,
        figures TEXT,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE INDEX destinations_stream ON destinations(stream_id, position);
    CREATE TABLE stream_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        stream_id TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        state TEXT,
        reason TEXT,
        detail TEXT
    );
    CREATE INDEX stream_events_stream ON stream_events(stream_id, seq);
    CREATE TABLE youtube_accounts (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL UNIQUE,
        channel_title TEXT NOT NULL,
        scopes TEXT NOT NULL,
        access_token BLOB NOT NULL,
        access_expires_at_ms INTEGER NOT NULL,
        refresh_token BLOB,
        needs_reconnect INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES youtube_accounts(id) ON DELETE CASCADE,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    );
    CREATE TABLE youtube_broadcasts (
        broadcast_id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        stream_id TEXT,
        ingest_url BLOB,
        owner_stream TEXT,
        state TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE TABLE youtube_quota (
        account_id TEXT NOT NULL,
        day TEXT NOT NULL,
        units INTEGER NOT NULL,
        PRIMARY KEY (account_id, day)
    );",
];

/// The store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    secrets: SecretBox,
    path: PathBuf,
}

/// A stream row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Stream id.
    pub id: String,
    /// Who created it (a YouTube account id, or `None` for the API token).
    pub owner: Option<String>,
    /// Lifecycle state (snake_case name).
    pub state: String,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// The stream's settings as JSON (no secrets).
    pub spec: String,
    /// Final (or latest saved) figures as JSON.
    pub figures: Option<String>,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: i64,
    /// When it ended, ms since the Unix epoch.
    pub ended_at_ms: Option<i64>,
}

/// A destination row; `secret` is the opened secret (for example the full RTMP URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRecord {
    /// Destination id.
    pub id: String,
    /// Its stream.
    pub stream_id: String,
    /// Order within the stream.
    pub position: i64,
    /// `rtmp`, `youtube`...
    pub kind: String,
    /// What may be shown (masked URL, privacy, broadcast id...) as JSON.
    pub public: String,
    /// The secret part (full URL with key, or JSON), stored sealed.
    pub secret: Option<String>,
    /// Destination state.
    pub state: String,
    /// Last error (code and message as JSON, or text).
    pub error: Option<String>,
    /// Figures as JSON.
    pub figures: Option<String>,
}

/// An event in a stream's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Increasing sequence number (global).
    pub seq: i64,
    /// Its stream.
    pub stream_id: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// `state`, `destination`, `youtube`...
    pub kind: String,
    /// The state entered, when a state change.
    pub state: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Extra JSON.
    pub detail: Option<String>,
}

/// A connected YouTube account with its tokens opened.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Our account id.
    pub id: String,
    /// The YouTube channel id (`UC...`).
    pub channel_id: String,
    /// The channel's title.
    pub channel_title: String,
    /// Granted scopes, space separated.
    pub scopes: String,
    /// The current access token.
    pub access_token: String,
    /// When it expires, ms since the Unix epoch.
    pub access_expires_at_ms: i64,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// The refresh token was refused (`invalid_grant`): the user must sign in again.
    pub needs_reconnect: bool,
    /// When connected first.
    pub created_at_ms: i64,
}

impl std::fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRecord")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .field("channel_title", &self.channel_title)
            .field("scopes", &self.scopes)
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("needs_reconnect", &self.needs_reconnect)
            .finish_non_exhaustive()
    }
}

/// A YouTube broadcast this server created (kept so a crash can be cleaned up).
#[derive(Clone, PartialEq, Eq)]
pub struct BroadcastRecord {
    /// The broadcast (video) id.
    pub broadcast_id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// The bound liveStream id.
    pub stream_id: Option<String>,
    /// The ingestion URL with the stream key (sealed at rest).
    pub ingest_url: Option<String>,
    /// The Streamify stream it serves.
    pub owner_stream: Option<String>,
    /// Our view of its state (`created`, `bound`, `live`, `complete`, `deleted`...).
    pub state: String,
}

impl std::fmt::Debug for BroadcastRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastRecord")
            .field("broadcast_id", &self.broadcast_id)
            .field("account_id", &self.account_id)
            .field("stream_id", &self.stream_id)
            .field("owner_stream", &self.owner_stream)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn db_err(e: rusqlite::Error) -> Error {
    tracing::error!(error = %e, "database error");
    Error::new(ErrorCode::Internal, "database error")
}

fn crypto_err(e: CryptoError) -> Error {
    tracing::error!(error = %e, "stored secret could not be opened");
    Error::new(ErrorCode::Internal, e.to_string())
}

impl Store {
    /// Opens (creating when needed) `data_dir/streamify.db`, applies migrations and loads the
    /// secret key from `secret_key` (the value of `STREAMIFY_SECRET_KEY`) or the key file.
    pub fn open(data_dir: &Path, secret_key: Option<&str>) -> Result<Store> {
        crate::config::ensure_private_dir(data_dir)?;
        let (secrets, _) = SecretBox::load(data_dir, secret_key)
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        Store::open_with(data_dir, secrets)
    }

    /// [`Store::open`] with the key from `STREAMIFY_SECRET_KEY` when it is set.
    pub fn open_from_env(data_dir: &Path) -> Result<Store> {
        let key = std::env::var(crypto::SECRET_KEY_ENV).ok();
        Store::open(data_dir, key.as_deref())
    }

    /// Like [`Store::open`] with a given secret box.
    pub fn open_with(data_dir: &Path, secrets: SecretBox) -> Result<Store> {
        crate::config::ensure_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE_NAME);
        let io = |e: std::io::Error| {
            Error::new(
                ErrorCode::Internal,
                format!("database file {}: {e}", path.display()),
            )
        };
        // Create the file owner-only before SQLite touches it; fix a pre-existing one.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let mut conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(db_err)?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            secrets,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The secret box (for values sealed outside the store).
    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }

    /// The schema version reached.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_err)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seal(&self, value: Option<&str>) -> Option<Vec<u8>> {
        value.map(|v| self.secrets.seal_str(v))
    }

    fn open_secret(&self, value: Option<Vec<u8>>) -> Result<Option<String>> {
        value
            .map(|v| self.secrets.open_string(&v).map_err(crypto_err))
            .transpose()
    }

    // ---- streams -------------------------------------------------------------------------

    /// Inserts or replaces a stream row.
    pub fn save_stream(&self, s: &StreamRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO streams (id, owner, state, reason, spec, figures, created_at_ms,
                     updated_at_ms, ended_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, state = excluded.state,
                     reason = excluded.reason, spec = excluded.spec, figures = excluded.figures,
                     updated_at_ms = excluded.updated_at_ms, ended_at_ms = excluded.ended_at_ms",
                params![
                    s.id,
                    s.owner,
                    s.state,
                    s.reason,
                    s.spec,
                    s.figures,
                    s.created_at_ms,
                    s.updated_at_ms,
                    s.ended_at_ms
                ],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// Records a state change: updates the stream row and appends a `state` event, atomically.
    pub fn record_state(
        &self,
        stream_id: &str,
        state: &str,
        reason: Option<&str>,
        detail: Option<&str>,
    ) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let now = now_ms();
        let ended = matches!(state, "ended" | "failed").then_some(now);
        let changed = tx
            .execute(
                "UPDATE streams SET state = ?2, reason = ?3, updated_at_ms = ?4,
                     ended_at_ms = COALESCE(?5, ended_at_ms) WHERE id = ?1",
                params![stream_id, state, reason, now, ended],
            )
            .map_err(db_err)?;
        if changed == 0 {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("no stream {stream_id}"),
            ));
        }
        tx.execute(
            "INSERT INTO stream_events (stream_id, at_ms, kind, state, reason, detail)
             VALUES (?1, ?2, 'state', ?3, ?4, ?5)",
            params![stream_id, now, state, reason, detail],
        )
        .map_err(db_err)?;
        let seq = tx.last_insert_rowid();
        tx.commit().map_err(db_err)?;
        Ok(seq)
    }

    /// Saves a stream's figures (final figures at the end).
    pub fn save_figures(&self, stream_id: &str, figures_json: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE streams SET figures = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![stream_id, figures_json, now_ms()],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// One stream.
    pub fn stream(&self, id: &str) -> Result<Option<StreamRecord>> {
        self.conn()
            .query_row(
                "SELECT id, owner, state, reason, spec, figures, created_at_ms, updated_at_ms,
                     ended_at_ms FROM streams WHERE id = ?1",
                [id],
                stream_row,
            )
            .optional()
            .map_err(db_err)
    }

    /// Streams, newest first, optionally only in `state`, with paging.
    pub fn streams(
        &self,
        state: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StreamRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, owner, state, reason, spec, figures, created_at_ms, updated_at_ms,
                     ended_at_ms FROM streams WHERE (?1 IS NULL OR state = ?1)
                 ORDER BY created_at_ms DESC, id LIMIT ?2 OFFSET ?3",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![state, limit, offset], stream_row)
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Deletes a stream with its destinations and events.
    pub fn delete_stream(&self, id: &str) -> Result<bool> {
        self.conn()
            .execute("DELETE FROM streams WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(db_err)
    }

    /// At start-up: every stream still in an active state is marked `ended` with `reason`
    /// (normally `server_restart`) and gets an event. Returns the ids marked.
    pub fn mark_interrupted(&self, reason: &str) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let now = now_ms();
        let ids: Vec<String> = {
            let placeholders = ACTIVE_STATES
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(",");
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT id FROM streams WHERE state IN ({placeholders}) ORDER BY id"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        for id in &ids {
            tx.execute(
                "UPDATE streams SET state = 'ended', reason = ?2, updated_at_ms = ?3,
                     ended_at_ms = ?3 WHERE id = ?1",
                params![id, reason, now],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO stream_events (stream_id, at_ms, kind, state, reason)
                 VALUES (?1, ?2, 'state', 'ended', ?3)",
                params![id, now, reason],
            )
            .map_err(db_err)?;
            tx.execute(
                "UPDATE destinations SET state = 'ended', updated_at_ms = ?2
                 WHERE stream_id = ?1 AND state NOT IN ('ended', 'failed')",
                params![id, now],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(ids)
    }

    // ---- destinations ----------------------------------------------------------------------

    /// Inserts or replaces a destination; its secret is sealed with a fresh nonce.
    pub fn save_destination(&self, d: &DestinationRecord) -> Result<()> {
        let secret = self.seal(d.secret.as_deref());
        self.conn()
            .execute(
                "INSERT INTO destinations (id, stream_id, position, kind, public, secret, state,
                     error, figures, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO UPDATE SET position = excluded.position,
                     kind = excluded.kind, public = excluded.public, secret = excluded.secret,
                     state = excluded.state, error = excluded.error, figures = excluded.figures,
                     updated_at_ms = excluded.updated_at_ms",
                params![
                    d.id,
                    d.stream_id,
                    d.position,
                    d.kind,
                    d.public,
                    secret,
                    d.state,
                    d.error,
                    d.figures,
                    now_ms()
                ],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// Updates a destination's state, error and figures (an event is appended as well).
    pub fn record_destination_state(
        &self,
        destination_id: &str,
        state: &str,
        error: Option<&str>,
        figures: Option<&str>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let now = now_ms();
        let stream_id: Option<String> = tx
            .query_row(
                "SELECT stream_id FROM destinations WHERE id = ?1",
                [destination_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        let Some(stream_id) = stream_id else {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("no destination {destination_id}"),
            ));
        };
        tx.execute(
            "UPDATE destinations SET state = ?2, error = ?3, figures = COALESCE(?4, figures),
                 updated_at_ms = ?5 WHERE id = ?1",
            params![destination_id, state, error, figures, now],
        )
        .map_err(db_err)?;
        let detail = serde_json::json!({"destination": destination_id, "error": error});
        tx.execute(
            "INSERT INTO stream_events (stream_id, at_ms, kind, state, reason, detail)
             VALUES (?1, ?2, 'destination', ?3, ?4, ?5)",
            params![stream_id, now, state, error, detail.to_string()],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// A stream's destinations in order, secrets opened.
    pub fn destinations(&self, stream_id: &str) -> Result<Vec<DestinationRecord>> {
        let rows: Vec<(DestinationRecord, Option<Vec<u8>>)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT id, stream_id, position, kind, public, secret, state, error, figures
                     FROM destinations WHERE stream_id = ?1 ORDER BY position, id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([stream_id], |r| {
                    Ok((
                        DestinationRecord {
                            id: r.get(0)?,
                            stream_id: r.get(1)?,
                            position: r.get(2)?,
                            kind: r.get(3)?,
                            public: r.get(4)?,
                            secret: None,
                            state: r.get(6)?,
                            error: r.get(7)?,
                            figures: r.get(8)?,
                        },
                        r.get(5)?,
                    ))
                })
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        rows.into_iter()
            .map(|(mut d, sealed)| {
                d.secret = self.open_secret(sealed)?;
                Ok(d)
            })
            .collect()
    }

    /// Removes a destination.
    pub fn delete_destination(&self, destination_id: &str) -> Result<bool> {
        self.conn()
            .execute("DELETE FROM destinations WHERE id = ?1", [destination_id])
            .map(|n| n > 0)
            .map_err(db_err)
    }

    // ---- events ----------------------------------------------------------------------------

    /// Appends an event that is not a state change (`kind` e.g. `youtube`, `health`).
    pub fn append_event(
        &self,
        stream_id: &str,
        kind: &str,
        reason: Option<&str>,
        detail: Option<&str>,
    ) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO stream_events (stream_id, at_ms, kind, reason, detail)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![stream_id, now_ms(), kind, reason, detail],
        )
        .map_err(db_err)?;
        Ok(conn.last_insert_rowid())
    }

    /// A stream's events after `after_seq` (0 for all), oldest first, at most `limit`.
    pub fn events(&self, stream_id: &str, after_seq: i64, limit: i64) -> Result<Vec<EventRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT seq, stream_id, at_ms, kind, state, reason, detail FROM stream_events
                 WHERE stream_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![stream_id, after_seq, limit], |r| {
                Ok(EventRecord {
                    seq: r.get(0)?,
                    stream_id: r.get(1)?,
                    at_ms: r.get(2)?,
                    kind: r.get(3)?,
                    state: r.get(4)?,
                    reason: r.get(5)?,
                    detail: r.get(6)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    // ---- YouTube accounts and sessions -----------------------------------------------------

    /// Inserts an account, or updates the one with the same channel (keeping its id and the
    /// old refresh token when Google sent none). Returns the account id.
    pub fn upsert_account(&self, a: &AccountRecord) -> Result<String> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row(
                "SELECT id FROM youtube_accounts WHERE channel_id = ?1",
                [&a.channel_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        let now = now_ms();
        let access = self.secrets.seal_str(&a.access_token);
        let refresh = self.seal(a.refresh_token.as_deref());
        match existing {
            Some(id) => {
                conn.execute(
                    "UPDATE youtube_accounts SET channel_title = ?2, scopes = ?3,
                         access_token = ?4, access_expires_at_ms = ?5,
                         refresh_token = COALESCE(?6, refresh_token), needs_reconnect = 0,
                         updated_at_ms = ?7 WHERE id = ?1",
                    params![
                        id,
                        a.channel_title,
                        a.scopes,
                        access,
                        a.access_expires_at_ms,
                        refresh,
                        now
                    ],
                )
                .map_err(db_err)?;
                Ok(id)
            }
            None => {
                conn.execute(
                    "INSERT INTO youtube_accounts (id, channel_id, channel_title, scopes,
                         access_token, access_expires_at_ms, refresh_token, needs_reconnect,
                         created_at_ms, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8)",
                    params![
                        a.id,
                        a.channel_id,
                        a.channel_title,
                        a.scopes,
                        access,
                        a.access_expires_at_ms,
                        refresh,
                        now
                    ],
                )
                .map_err(db_err)?;
                Ok(a.id.clone())
            }
        }
    }

    /// One account, tokens opened.
    pub fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, channel_id, channel_title, scopes, access_token, access_expires_at_ms,
                     refresh_token, needs_reconnect, created_at_ms
                 FROM youtube_accounts WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, Option<Vec<u8>>>(6)?,
                        r.get::<_, bool>(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err)?;
        let Some((id, channel_id, channel_title, scopes, access, expires, refresh, nr, created)) =
            row
        else {
            return Ok(None);
        };
        Ok(Some(AccountRecord {
            id,
            channel_id,
            channel_title,
            scopes,
            access_token: self.secrets.open_string(&access).map_err(crypto_err)?,
            access_expires_at_ms: expires,
            refresh_token: self.open_secret(refresh)?,
            needs_reconnect: nr,
            created_at_ms: created,
        }))
    }

    /// The ids of every account, most recently updated first.
    pub fn account_ids(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM youtube_accounts ORDER BY updated_at_ms DESC, id")
            .map_err(db_err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    /// Stores refreshed tokens (the refresh token only when Google sent a new one).
    pub fn update_tokens(
        &self,
        id: &str,
        access_token: &str,
        access_expires_at_ms: i64,
        refresh_token: Option<&str>,
    ) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE youtube_accounts SET access_token = ?2, access_expires_at_ms = ?3,
                     refresh_token = COALESCE(?4, refresh_token), updated_at_ms = ?5
                 WHERE id = ?1",
                params![
                    id,
                    self.secrets.seal_str(access_token),
                    access_expires_at_ms,
                    self.seal(refresh_token),
                    now_ms()
                ],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// Marks an account as needing to sign in again.
    pub fn set_needs_reconnect(&self, id: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE youtube_accounts SET needs_reconnect = 1, updated_at_ms = ?2 WHERE id = ?1",
                params![id, now_ms()],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// Deletes an account, its sessions and its quota rows.
    pub fn delete_account(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute("DELETE FROM sessions WHERE account_id = ?1", [id])
            .map_err(db_err)?;
        tx.execute("DELETE FROM youtube_quota WHERE account_id = ?1", [id])
            .map_err(db_err)?;
        let n = tx
            .execute("DELETE FROM youtube_accounts WHERE id = ?1", [id])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(n > 0)
    }

    /// Stores a browser session (only the SHA-256 of its token is kept).
    pub fn create_session(&self, token: &str, account_id: &str, ttl_ms: i64) -> Result<()> {
        let now = now_ms();
        let conn = self.conn();
        conn.execute("DELETE FROM sessions WHERE expires_at_ms < ?1", [now])
            .map_err(db_err)?;
        conn.execute(
            "INSERT INTO sessions (token_hash, account_id, created_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![token_hash(token), account_id, now, now + ttl_ms],
        )
        .map(drop)
        .map_err(db_err)
    }

    /// The account of a live (unexpired) session token.
    pub fn session_account(&self, token: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT account_id FROM sessions WHERE token_hash = ?1 AND expires_at_ms > ?2",
                params![token_hash(token), now_ms()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
    }

    /// Ends a session.
    pub fn delete_session(&self, token: &str) -> Result<()> {
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [token_hash(token)],
            )
            .map(drop)
            .map_err(db_err)
    }

    // ---- YouTube broadcasts and quota ------------------------------------------------------

    /// Inserts or replaces a broadcast row (its ingestion URL sealed).
    pub fn save_broadcast(&self, b: &BroadcastRecord) -> Result<()> {
        let now = now_ms();
        self.conn()
            .execute(
                "INSERT INTO youtube_broadcasts (broadcast_id, account_id, stream_id, ingest_url,
                     owner_stream, state, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT(broadcast_id) DO UPDATE SET stream_id = excluded.stream_id,
                     ingest_url = excluded.ingest_url, owner_stream = excluded.owner_stream,
                     state = excluded.state, updated_at_ms = excluded.updated_at_ms",
                params![
                    b.broadcast_id,
                    b.account_id,
                    b.stream_id,
                    self.seal(b.ingest_url.as_deref()),
                    b.owner_stream,
                    b.state,
                    now
                ],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// Sets a broadcast's state.
    pub fn set_broadcast_state(&self, broadcast_id: &str, state: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE youtube_broadcasts SET state = ?2, updated_at_ms = ?3
                 WHERE broadcast_id = ?1",
                params![broadcast_id, state, now_ms()],
            )
            .map(drop)
            .map_err(db_err)
    }

    /// One broadcast.
    pub fn broadcast(&self, broadcast_id: &str) -> Result<Option<BroadcastRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT broadcast_id, account_id, stream_id, ingest_url, owner_stream, state
                 FROM youtube_broadcasts WHERE broadcast_id = ?1",
                [broadcast_id],
                |r| {
                    Ok((
                        BroadcastRecord {
                            broadcast_id: r.get(0)?,
                            account_id: r.get(1)?,
                            stream_id: r.get(2)?,
                            ingest_url: None,
                            owner_stream: r.get(4)?,
                            state: r.get(5)?,
                        },
                        r.get::<_, Option<Vec<u8>>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err)?;
        row.map(|(mut b, sealed)| {
            b.ingest_url = self.open_secret(sealed)?;
            Ok(b)
        })
        .transpose()
    }

    /// Broadcasts not yet `complete` or `deleted` (left over by a crash), oldest first.
    pub fn open_broadcasts(&self) -> Result<Vec<BroadcastRecord>> {
        self.open_broadcasts_untouched_since(i64::MAX)
    }

    /// Open broadcasts (as [`Store::open_broadcasts`]) last changed before `before_ms`.
    pub fn open_broadcasts_untouched_since(&self, before_ms: i64) -> Result<Vec<BroadcastRecord>> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT broadcast_id FROM youtube_broadcasts
                     WHERE state NOT IN ('complete', 'deleted', 'abandoned')
                       AND updated_at_ms < ?1
                     ORDER BY created_at_ms, broadcast_id",
                )
                .map_err(db_err)?;
            let rows = stmt.query_map([before_ms], |r| r.get(0)).map_err(db_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.broadcast(&id)?);
        }
        Ok(out)
    }

    /// Adds `units` to an account's count for `day`; returns the new total.
    pub fn add_quota(&self, account_id: &str, day: &str, units: i64) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO youtube_quota (account_id, day, units) VALUES (?1, ?2, ?3)
             ON CONFLICT(account_id, day) DO UPDATE SET units = units + excluded.units",
            params![account_id, day, units],
        )
        .map_err(db_err)?;
        conn.query_row(
            "SELECT units FROM youtube_quota WHERE account_id = ?1 AND day = ?2",
            params![account_id, day],
            |r| r.get(0),
        )
        .map_err(db_err)
    }

    /// An account's units for `day` (0 when none).
    pub fn quota(&self, account_id: &str, day: &str) -> Result<i64> {
        self.conn()
            .query_row(
                "SELECT units FROM youtube_quota WHERE account_id = ?1 AND day = ?2",
                params![account_id, day],
                |r| r.get(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(db_err)
    }
}

fn stream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamRecord> {
    Ok(StreamRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        state: r.get(2)?,
        reason: r.get(3)?,
        spec: r.get(4)?,
        figures: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
        ended_at_ms: r.get(8)?,
    })
}

/// SHA-256 of a session token, hex (sessions are looked up by hash, never stored in clear).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::new(
            ErrorCode::Internal,
            format!(
                "the database was written by a newer Streamify (schema {version}, this build knows {known})"
            ),
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "streamify-store-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn stream(id: &str, state: &str) -> StreamRecord {
        StreamRecord {
            id: id.into(),
            owner: None,
            state: state.into(),
            reason: None,
            spec: "{}".into(),
            figures: None,
            created_at_ms: now_ms(),
            updated_at_ms: now_ms(),
            ended_at_ms: None,
        }
    }

    #[test]
    fn files_are_private_and_migrations_idempotent() {
        let dir = temp_dir("perm").join("data");
        let store = Store::open_with(&dir, SecretBox::from_key(&[1; 32])).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(store.path()), 0o600);
        drop(store);
        let again = Store::open_with(&dir, SecretBox::from_key(&[1; 32])).unwrap();
        assert_eq!(again.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn restart_marks_active_streams_ended() {
        let dir = temp_dir("restart");
        {
            let store = Store::open_with(&dir, SecretBox::from_key(&[1; 32])).unwrap();
            store.save_stream(&stream("a", "created")).unwrap();
            store.save_stream(&stream("b", "ended")).unwrap();
            store
                .record_state("a", "live", Some("started"), None)
                .unwrap();
            store
                .save_destination(&DestinationRecord {
                    id: "d1".into(),
                    stream_id: "a".into(),
                    position: 0,
                    kind: "rtmp".into(),
                    public: r#"{"url":"rtmp://x/live/****"}"#.into(),
                    secret: Some("rtmp://x/live/supersecretkey".into()),
                    state: "live".into(),
                    error: None,
                    figures: None,
                })
                .unwrap();
        }
        let store = Store::open_with(&dir, SecretBox::from_key(&[1; 32])).unwrap();
        assert_eq!(store.mark_interrupted("server_restart").unwrap(), vec!["a"]);
        let a = store.stream("a").unwrap().unwrap();
        assert_eq!(a.state, "ended");
        assert_eq!(a.reason.as_deref(), Some("server_restart"));
        assert!(a.ended_at_ms.is_some());
        assert_eq!(store.stream("b").unwrap().unwrap().reason, None);
        let events = store.events("a", 0, 100).unwrap();
        let states: Vec<_> = events.iter().filter_map(|e| e.state.as_deref()).collect();
        assert_eq!(states, ["live", "ended"]);
        let dests = store.destinations("a").unwrap();
        assert_eq!(dests[0].state, "ended");
        assert_eq!(
            dests[0].secret.as_deref(),
            Some("rtmp://x/live/supersecretkey")
        );
        drop(store);
        let bytes = std::fs::read(dir.join(DB_FILE_NAME)).unwrap();
        assert!(!bytes.windows(14).any(|w| w == b"supersecretkey"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn accounts_sessions_and_quota() {
        let dir = temp_dir("accounts");
        let store = Store::open_with(&dir, SecretBox::from_key(&[2; 32])).unwrap();
        let mut account = AccountRecord {
            id: "acc1".into(),
            channel_id: "UCabc".into(),
            channel_title: "Chan".into(),
            scopes: "https://www.googleapis.com/auth/youtube".into(),
            access_token: "ya29.access-one".into(),
            access_expires_at_ms: 10,
            refresh_token: Some("1//refresh-one".into()),
            needs_reconnect: false,
            created_at_ms: 0,
        };
        assert_eq!(store.upsert_account(&account).unwrap(), "acc1");
        // Reconnecting the same channel keeps the id and the refresh token when none is sent.
        account.id = "acc2".into();
        account.access_token = "ya29.access-two".into();
        account.refresh_token = None;
        assert_eq!(store.upsert_account(&account).unwrap(), "acc1");
        let loaded = store.account("acc1").unwrap().unwrap();
        assert_eq!(loaded.access_token, "ya29.access-two");
        assert_eq!(loaded.refresh_token.as_deref(), Some("1//refresh-one"));
        assert!(!format!("{loaded:?}").contains("ya29"));
        store.set_needs_reconnect("acc1").unwrap();
        assert!(store.account("acc1").unwrap().unwrap().needs_reconnect);

        store
            .create_session("cookie-value", "acc1", 60_000)
            .unwrap();
        assert_eq!(
            store.session_account("cookie-value").unwrap().as_deref(),
            Some("acc1")
        );
        assert_eq!(store.session_account("other").unwrap(), None);

        assert_eq!(store.add_quota("acc1", "2026-11-25", 50).unwrap(), 50);
        assert_eq!(store.add_quota("acc1", "2026-11-25", 1).unwrap(), 51);
        assert_eq!(store.quota("acc1", "2026-11-26").unwrap(), 0);

        assert!(store.delete_account("acc1").unwrap());
        assert_eq!(store.session_account("cookie-value").unwrap(), None);
        assert_eq!(store.account("acc1").unwrap(), None);
        drop(store);
        let bytes = std::fs::read(dir.join(DB_FILE_NAME)).unwrap();
        for secret in [&b"ya29.access"[..], b"refresh-one", b"cookie-value"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
