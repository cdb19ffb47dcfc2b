//! Persistence (sqlx): one store over two backends, embedded SQLite (the default, one machine)
//! or PostgreSQL (several frontdesk instances sharing one database, issue 13). All SQL of
//! frontdesk lives in this module.
//!
//! * **Backends.** [`Store`] wraps an `sqlx::AnyPool`; [`Backend`] says which database is behind
//!   it. Statements are runtime-checked (`sqlx::query`, not `query!`), written once in SQLite's
//!   dialect with `?` placeholders and rewritten for PostgreSQL by [`sql!`](crate::sql) (see
//!   [`sql`]); every statement runs in the store tests on both backends. Where the dialects
//!   differ (transaction start, locking), the code branches on [`Backend`] next to the statement.
//! * **Migrations.** One directory per backend, embedded at build time: `migrations/sqlite/` and
//!   `migrations/postgres/`, same version numbers, same table and column names. Applied by
//!   [`Store::open`] (and `frontdesk db migrate`); on PostgreSQL sqlx takes an advisory lock, so
//!   several instances starting at once apply them once.
//! * **SQLite** runs in WAL mode with a 5 s busy timeout, so call tasks can write concurrently.
//! * **PostgreSQL** gets a bounded pool ([`PoolSettings`]), a per-statement timeout and a
//!   connection check before each use (so the pool reconnects after the server restarts).

pub mod calendar;
pub mod history;
pub mod messages;
pub mod sql;
mod target;
pub mod testing;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::sql;

pub use target::{DbTarget, Password, TargetError, DEFAULT_DB};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--db` value is not usable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Opening or creating the database failed.
    #[error("failed to open database {target}")]
    Open {
        /// The database path or URL (without password).
        target: String,
        /// The driver error (shown by the error chain).
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("failed to apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A query of the calendar store failed.
    #[error(transparent)]
    Calendar(#[from] calendar::Error),
}

/// Which database is behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (one frontdesk process).
    Sqlite,
    /// PostgreSQL server (shared by several instances).
    Postgres,
}

/// The embedded migrations of `migrations/sqlite/`.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// The embedded migrations of `migrations/postgres/`.
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Backend {
    /// The migrations of this backend.
    pub fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

impl Backend {
    /// The backend of an open connection.
    pub fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Pool limits and timeouts.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Most open connections of this process (SQLite: 4; PostgreSQL default 10, so N
    /// instances need N×10 of the server's `max_connections`).
    pub max_connections: u32,
    /// Longest wait for a free connection (or for a new one while the server is down).
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` (and `lock_timeout`), SQLite `busy_timeout`: a statement
    /// running (or waiting for a lock) longer fails.
    pub statement_timeout: Duration,
}

impl PoolSettings {
    /// The defaults for `backend`: SQLite 4 connections; PostgreSQL 10 connections, 3 s to get
    /// one, 5 s per statement.
    pub fn for_backend(backend: Backend) -> PoolSettings {
        match backend {
            Backend::Sqlite => PoolSettings {
                max_connections: 4,
                acquire_timeout: Duration::from_secs(30),
                statement_timeout: Duration::from_secs(5),
            },
            Backend::Postgres => PoolSettings {
                max_connections: 10,
                acquire_timeout: Duration::from_secs(3),
                statement_timeout: Duration::from_secs(5),
            },
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Path or URL without password, for messages.
    name: std::sync::Arc<str>,
}

/// Facts known when an INVITE arrives.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    /// SIP Call-ID.
    pub call_id: &'a str,
    /// From URI.
    pub from_uri: &'a str,
    /// To URI.
    pub to_uri: &'a str,
    /// Caller's number, if known.
    pub caller: Option<&'a str>,
    /// Called number, if known.
    pub called: Option<&'a str>,
    /// `udp` or `tcp`.
    pub transport: &'a str,
    /// When the INVITE arrived.
    pub started_at: DateTime<Utc>,
}

/// Facts known when a call ends.
#[derive(Debug, Clone, Default)]
pub struct CallEnd {
    /// Why it ended (e.g. `remote-bye`).
    pub end_reason: String,
    /// `local` or `remote`.
    pub end_initiator: String,
    /// Final response we sent to the INVITE (200, 487, 488, 503, ...).
    pub sip_status: Option<u16>,
    /// RTP packets received.
    pub packets_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// 20 ms silence frames inserted for missing caller audio.
    pub concealed_frames: u64,
    /// Media quality, when the call got as far as exchanging media.
    pub media: Option<MediaRecord>,
    /// Realtime model of the session, when one was opened.
    pub model: Option<String>,
    /// Usage the Realtime service reported, when a session was opened.
    pub usage: Option<crate::pricing::CallUsage>,
    /// Estimated cost in USD (`None`: no session, or no price for the model).
    pub cost_usd: Option<f64>,
    /// Times the call moved to a new model session (session rollover).
    pub rollovers: u64,
    /// The conversation (empty when `[privacy] store_transcripts = false`).
    pub turns: Vec<crate::bridge::transcript::Turn>,
}

/// Media quality figures of one call (see `migrations/{sqlite,postgres}/20261122000003_call_media_stats.sql`).
#[derive(Debug, Clone, Default)]
pub struct MediaRecord {
    /// Caller packets never received.
    pub lost: u64,
    /// Caller packets that arrived too late to play.
    pub late: u64,
    /// Duplicate caller packets.
    pub duplicated: u64,
    /// Caller packets that arrived out of order.
    pub reordered: u64,
    /// RFC 3550 interarrival jitter of the caller's stream, ms.
    pub jitter_ms: f64,
    /// Longest a caller frame waited in the input relay (for a gap or the rest of a frame), ms.
    pub max_depth_ms: u64,
    /// Fraction of our packets the caller reported lost (0.0–1.0), from RTCP.
    pub remote_fraction_lost: Option<f64>,
    /// Packets of ours the caller reported lost in total, from RTCP.
    pub remote_cumulative_lost: Option<i64>,
    /// Jitter of our stream at the caller, ms, from RTCP.
    pub remote_jitter_ms: Option<f64>,
    /// Key presses received.
    pub dtmf_digits: u64,
    /// Times the caller interrupted the agent.
    pub barge_ins: u64,
    /// Caller frames the echo gate replaced with silence.
    pub echo_gated_frames: u64,
    /// `speech_started` during agent audio explained by its echo.
    pub false_barge_ins: u64,
    /// `speech_started` during agent audio with the caller's own voice.
    pub true_barge_ins: u64,
}

/// A stored call, as read back (for tests and the staff tools).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallRow {
    /// SIP Call-ID.
    pub call_id: String,
    /// From URI.
    pub from_uri: String,
    /// Caller's number.
    pub caller: Option<String>,
    /// Called number.
    pub called: Option<String>,
    /// Agent profile.
    pub profile: Option<String>,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub answered_at: Option<String>,
    /// RFC 3339 UTC.
    pub ended_at: Option<String>,
    /// End reason.
    pub end_reason: Option<String>,
    /// Final INVITE status.
    pub sip_status: Option<i64>,
    /// PCMU or PCMA.
    pub codec: Option<String>,
    /// RTP packets received.
    pub packets_in: i64,
    /// RTP packets sent.
    pub packets_out: i64,
    /// Caller packets lost (concealed).
    pub packets_lost: Option<i64>,
    /// Key presses received.
    pub dtmf_digits: Option<i64>,
    /// Times the caller interrupted the agent.
    pub barge_ins: Option<i64>,
    /// Times the call moved to a new model session.
    pub rollovers: i64,
}

impl Store {
    /// Opens the database (a SQLite path, `&DbTarget` or a parsed `--db`), creating a missing
    /// SQLite file, with the default [`PoolSettings`], and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Open`] if the database cannot be reached or created, [`Error::Migrate`] if the
    /// schema cannot be brought up to date.
    pub async fn open(target: impl Into<DbTarget>) -> Result<Store, Error> {
        let target = target.into();
        let settings = PoolSettings::for_backend(target.backend());
        Store::open_with(&target, &settings).await
    }

    /// [`Store::open`] with explicit pool settings.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open_with(target: &DbTarget, settings: &PoolSettings) -> Result<Store, Error> {
        sqlx::any::install_default_drivers();
        let backend = target.backend();
        let name: std::sync::Arc<str> = target.to_string().into();
        let open_err = |source| Error::Open {
            target: name.to_string(),
            source,
        };
        let opts = AnyConnectOptions::from_url(&target.connect_url()).map_err(open_err)?;
        let statement_ms = settings.statement_timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .test_before_acquire(true)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            let busy = format!("PRAGMA busy_timeout = {statement_ms}");
                            conn.execute(sqlx::AssertSqlSafe(busy)).await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Backend::Postgres => {
                            let set = format!(
                                "SET statement_timeout = {statement_ms}; SET lock_timeout = {statement_ms}"
                            );
                            conn.execute(sqlx::AssertSqlSafe(set)).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        backend.migrator().run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            name,
        })
    }

    /// The connection pool, for the other store submodules (calendar, tool calls) and tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write: `BEGIN IMMEDIATE` on SQLite (the write lock is
    /// taken before the first read, so check-then-insert cannot race), `BEGIN` on PostgreSQL
    /// (where the writers take their own row or advisory locks).
    ///
    /// # Errors
    /// [`sqlx::Error`] when no connection can be had or the statement fails.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// The database path or URL, without password (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records a new call; returns its row id.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_started(&self, call: &NewCall<'_>) -> Result<i64, Error> {
        let id: i64 = sqlx::query_scalar(sql!(
            self.backend,
            "INSERT INTO calls (call_id, from_uri, to_uri, caller, called, transport, started_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
        ))
        .bind(call.call_id)
        .bind(call.from_uri)
        .bind(call.to_uri)
        .bind(call.caller)
        .bind(call.called)
        .bind(call.transport)
        .bind(rfc3339(call.started_at))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records the agent profile chosen by the dialplan.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_routed(&self, id: i64, profile: &str) -> Result<(), Error> {
        sqlx::query(sql!(
            self.backend,
            "UPDATE calls SET profile = ? WHERE id = ?"
        ))
        .bind(profile)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that we answered the call (200 OK) with `codec` (`PCMU`/`PCMA`).
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_answered(
        &self,
        id: i64,
        codec: &str,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        sqlx::query(sql!(
            self.backend,
            "UPDATE calls SET answered_at = ?, codec = ?, sip_status = 200 WHERE id = ?"
        ))
        .bind(rfc3339(at))
        .bind(codec)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the end of a call.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_ended(&self, id: i64, end: &CallEnd, at: DateTime<Utc>) -> Result<(), Error> {
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let m = end.media.as_ref();
        let u = end.usage.as_ref();
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql!(
            self.backend,
            "UPDATE calls SET ended_at = ?, end_reason = ?, end_initiator = ?,
                 sip_status = COALESCE(?, sip_status), packets_in = ?, packets_out = ?,
                 concealed_frames = ?, packets_lost = ?, packets_late = ?, packets_duplicated = ?,
                 packets_reordered = ?, jitter_ms = ?, max_jitter_buffer_ms = ?,
                 remote_fraction_lost = ?, remote_cumulative_lost = ?, remote_jitter_ms = ?,
                 dtmf_digits = ?, barge_ins = ?, echo_gated_frames = ?, false_barge_ins = ?,
                 true_barge_ins = ?, model = ?, responses = ?,
                 input_text_tokens = ?, input_audio_tokens = ?, cached_text_tokens = ?,
                 cached_audio_tokens = ?, output_text_tokens = ?, output_audio_tokens = ?,
                 billed_seconds = ?, cost_usd = ?, rollovers = ?
             WHERE id = ?"
        ))
        .bind(rfc3339(at))
        .bind(&end.end_reason)
        .bind(&end.end_initiator)
        .bind(end.sip_status.map(i64::from))
        .bind(int(end.packets_in))
        .bind(int(end.packets_out))
        .bind(int(end.concealed_frames))
        .bind(m.map(|m| int(m.lost)))
        .bind(m.map(|m| int(m.late)))
        .bind(m.map(|m| int(m.duplicated)))
        .bind(m.map(|m| int(m.reordered)))
        .bind(m.map(|m| m.jitter_ms))
        .bind(m.map(|m| int(m.max_depth_ms)))
        .bind(m.and_then(|m| m.remote_fraction_lost))
        .bind(m.and_then(|m| m.remote_cumulative_lost))
        .bind(m.and_then(|m| m.remote_jitter_ms))
        .bind(m.map(|m| int(m.dtmf_digits)))
        .bind(m.map(|m| int(m.barge_ins)))
        .bind(m.map(|m| int(m.echo_gated_frames)))
        .bind(m.map(|m| int(m.false_barge_ins)))
        .bind(m.map(|m| int(m.true_barge_ins)))
        .bind(end.model.as_deref())
        .bind(u.map(|u| int(u.responses)))
        .bind(u.map(|u| int(u.input_text_tokens)))
        .bind(u.map(|u| int(u.input_audio_tokens)))
        .bind(u.map(|u| int(u.cached_text_tokens)))
        .bind(u.map(|u| int(u.cached_audio_tokens)))
        .bind(u.map(|u| int(u.output_text_tokens)))
        .bind(u.map(|u| int(u.output_audio_tokens)))
        .bind(u.map(|u| u.billed_seconds))
        .bind(end.cost_usd)
        .bind(int(end.rollovers))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        history::insert_turns(&mut tx, self.backend, id, &end.turns).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the whole record of a call whose row could not be written while it ran (the
    /// database was unreachable): finds the row an earlier, timed-out [`Store::call_started`]
    /// may have written (same Call-ID and start time), else inserts it, then records the end.
    /// Safe to repeat until it succeeds.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn record_call(
        &self,
        call: &NewCall<'_>,
        end: &CallEnd,
        at: DateTime<Utc>,
    ) -> Result<i64, Error> {
        let existing: Option<i64> = sqlx::query_scalar(sql!(
            self.backend,
            "SELECT id FROM calls WHERE call_id = ? AND started_at = ? ORDER BY id DESC LIMIT 1"
        ))
        .bind(call.call_id)
        .bind(rfc3339(call.started_at))
        .fetch_optional(&self.pool)
        .await?;
        let id = match existing {
            Some(id) => id,
            None => self.call_started(call).await?,
        };
        self.call_ended(id, end, at).await?;
        Ok(id)
    }

    /// Records the end of a call whose task died without writing it (a panic, seen by the call
    /// supervisor): the newest row with this Call-ID started at or after `call.started_at` (the
    /// supervisor's clock reading taken before the task started) gets `end` unless it has ended
    /// already; without such a row, the whole row is written from `call`. Returns the row id.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn record_unfinished_call(
        &self,
        call: &NewCall<'_>,
        end: &CallEnd,
        at: DateTime<Utc>,
    ) -> Result<i64, Error> {
        let existing: Option<(i64, Option<String>)> = sqlx::query_as(sql!(
            self.backend,
            "SELECT id, ended_at FROM calls WHERE call_id = ? AND started_at >= ?
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(call.call_id)
        .bind(rfc3339(call.started_at))
        .fetch_optional(&self.pool)
        .await?;
        match existing {
            Some((id, Some(_))) => Ok(id),
            Some((id, None)) => {
                self.call_ended(id, end, at).await?;
                Ok(id)
            }
            None => {
                let id = self.call_started(call).await?;
                self.call_ended(id, end, at).await?;
                Ok(id)
            }
        }
    }

    /// The calls with this Call-ID, oldest first.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn calls_by_call_id(&self, call_id: &str) -> Result<Vec<CallRow>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(sql!(
            self.backend,
            "SELECT call_id, from_uri, caller, called, profile, started_at, answered_at, ended_at,
                    end_reason, sip_status, codec, packets_in, packets_out, packets_lost,
                    dtmf_digits, barge_ins, rollovers
             FROM calls WHERE call_id = ? ORDER BY id"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The most recent calls, newest first (at most `limit`).
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(sql!(
            self.backend,
            "SELECT call_id, from_uri, caller, called, profile, started_at, answered_at, ended_at,
                    end_reason, sip_status, codec, packets_in, packets_out, packets_lost,
                    dtmf_digits, barge_ins, rollovers
             FROM calls ORDER BY id DESC LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Closes the pool (on SQLite this checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh store of each backend (PostgreSQL only when [`testing::pg_server`] has one).
    pub(crate) async fn fresh_stores(dir: &std::path::Path) -> Vec<(Store, DbTarget)> {
        let mut out = Vec::new();
        let sqlite = DbTarget::from(dir.join("t.db"));
        out.push((Store::open(&sqlite).await.expect("open sqlite"), sqlite));
        if let Some(pg) = testing::pg_server() {
            let target = pg.create_database().expect("createdb");
            out.push((Store::open(&target).await.expect("open postgres"), target));
        }
        out
    }

    /// A call task that died mid-call: its open row is ended (not duplicated), an ended row is
    /// left alone, and a call that never got its row gets one — on each backend.
    #[tokio::test]
    async fn an_unfinished_call_is_ended_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (store, target) in fresh_stores(dir.path()).await {
            let before = Utc::now();
            let call = |call_id, started_at| NewCall {
                call_id,
                from_uri: "sip:alice@host",
                to_uri: "sip:panic@host",
                caller: Some("alice"),
                called: Some("panic"),
                transport: "udp",
                started_at,
            };
            let end = CallEnd {
                end_reason: "internal-error".into(),
                end_initiator: "local".into(),
                ..CallEnd::default()
            };
            // The task inserted its row a moment after the supervisor's clock reading.
            let started = before + chrono::Duration::milliseconds(5);
            let id = store
                .call_started(&call("open@h", started))
                .await
                .expect("start");
            let got = store
                .record_unfinished_call(&call("open@h", before), &end, Utc::now())
                .await
                .expect("end");
            assert_eq!(got, id, "{target}");
            // Repeating it changes nothing; a call without a row gets one.
            store
                .record_unfinished_call(&call("open@h", before), &end, Utc::now())
                .await
                .expect("again");
            store
                .record_unfinished_call(&call("norow@h", before), &end, Utc::now())
                .await
                .expect("insert");
            for call_id in ["open@h", "norow@h"] {
                let rows = store.calls_by_call_id(call_id).await.expect("rows");
                assert_eq!(rows.len(), 1, "{target} {call_id}: {rows:?}");
                assert_eq!(rows[0].end_reason.as_deref(), Some("internal-error"));
            }
        }
    }

    /// The database is down when a call starts: nothing can be written then; once it is back,
    /// [`Store::record_call`] writes the whole row (once, however often it is repeated).
    #[tokio::test]
    async fn a_call_row_is_written_after_the_database_comes_back() {
        if testing::pg_server().is_none() {
            return;
        }
        let pg = testing::PgServer::start().expect("own server");
        let target = pg.create_database().expect("createdb");
        let store = Store::open(&target).await.expect("open");
        let t0 = Utc::now();
        let call = NewCall {
            call_id: "down@host",
            from_uri: "sip:alice@host",
            to_uri: "sip:frontdesk@host",
            caller: Some("alice"),
            called: Some("frontdesk"),
            transport: "udp",
            started_at: t0,
        };
        let end = CallEnd {
            end_reason: "remote-bye".into(),
            end_initiator: "remote".into(),
            sip_status: Some(200),
            packets_in: 7,
            ..CallEnd::default()
        };
        pg.stop().expect("stop");
        let err = store
            .call_started(&call)
            .await
            .expect_err("the database is down");
        assert!(calendar::Error::Query(match err {
            Error::Query(e) => e,
            other => panic!("{other}"),
        })
        .is_unreachable());
        assert!(store.record_call(&call, &end, t0).await.is_err());
        pg.start_again().expect("start");
        store
            .record_call(&call, &end, t0)
            .await
            .expect("written once it is back");
        store
            .record_call(&call, &end, t0)
            .await
            .expect("repeat is harmless");
        let rows = store.calls_by_call_id("down@host").await.expect("read");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].end_reason.as_deref(), Some("remote-bye"));
        assert_eq!(rows[0].packets_in, 7);
        store.close().await;
    }

    #[tokio::test]
    async fn call_lifecycle_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (store, target) in fresh_stores(dir.path()).await {
            let t0 = Utc::now();
            let id = store
                .call_started(&NewCall {
                    call_id: "abc@host",
                    from_uri: "sip:alice@host",
                    to_uri: "sip:frontdesk@host",
                    caller: Some("alice"),
                    called: Some("frontdesk"),
                    transport: "udp",
                    started_at: t0,
                })
                .await
                .expect("insert");
            store.call_routed(id, "receptionist").await.expect("route");
            store.call_answered(id, "PCMU", t0).await.expect("answer");
            let end = CallEnd {
                end_reason: "remote-bye".into(),
                end_initiator: "remote".into(),
                packets_in: 10,
                packets_out: 20,
                media: Some(MediaRecord {
                    jitter_ms: 1.5,
                    remote_fraction_lost: None,
                    barge_ins: 2,
                    echo_gated_frames: 40,
                    false_barge_ins: 1,
                    true_barge_ins: 3,
                    ..MediaRecord::default()
                }),
                rollovers: 1,
                ..CallEnd::default()
            };
            store.call_ended(id, &end, t0).await.expect("end");
            let rows = store.calls_by_call_id("abc@host").await.expect("read");
            assert_eq!(rows.len(), 1, "{target}");
            let r = &rows[0];
            assert_eq!(r.end_reason.as_deref(), Some("remote-bye"));
            assert_eq!(r.codec.as_deref(), Some("PCMU"));
            assert_eq!(r.sip_status, Some(200));
            assert_eq!((r.packets_in, r.packets_out), (10, 20));
            assert_eq!(r.profile.as_deref(), Some("receptionist"));
            assert_eq!(r.barge_ins, Some(2));
            assert_eq!(r.rollovers, 1);
            let d = store
                .call_detail("abc@host")
                .await
                .expect("detail")
                .expect("the call");
            assert_eq!(
                (
                    d.media.echo_gated_frames,
                    d.media.false_barge_ins,
                    d.media.true_barge_ins
                ),
                (Some(40), Some(1), Some(3)),
                "{target}"
            );
            assert_eq!(store.recent_calls(5).await.expect("recent").len(), 1);
            // Re-opening applies no migration twice.
            store.close().await;
            Store::open(&target).await.expect("reopen");
        }
    }
}
