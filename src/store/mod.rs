//! SQLite persistence (sqlx). All SQL of frontdesk lives in this module; migrations are in
//! `migrations/` at the top level and are embedded into the binary at build time.
//!
//! The database runs in WAL mode with a busy timeout, so call tasks can write concurrently.

pub mod calendar;
pub mod history;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or creating the database file failed.
    #[error("failed to open database {path}: {source}")]
    Open {
        /// The database path.
        path: String,
        /// The driver error.
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

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
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
    /// The conversation (empty when `[privacy] store_transcripts = false`).
    pub turns: Vec<crate::bridge::transcript::Turn>,
}

/// Media quality figures of one call (see `migrations/20261122000003_call_media_stats.sql`).
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
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path` and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::Open`] if the file cannot be opened or created, [`Error::Migrate`] if the schema
    /// cannot be brought up to date.
    pub async fn open(path: &Path) -> Result<Store, Error> {
        let open_err = |source| Error::Open {
            path: path.display().to_string(),
            source,
        };
        let opts = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    /// The connection pool, for the other store submodules (calendar, tool calls).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Records a new call; returns its row id.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_started(&self, call: &NewCall<'_>) -> Result<i64, Error> {
        let res = sqlx::query(
            "INSERT INTO calls (call_id, from_uri, to_uri, caller, called, transport, started_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(call.call_id)
        .bind(call.from_uri)
        .bind(call.to_uri)
        .bind(call.caller)
        .bind(call.called)
        .bind(call.transport)
        .bind(rfc3339(call.started_at))
        .execute(&self.pool)
        .await?;
        Ok(res.last_insert_rowid())
    }

    /// Records the agent profile chosen by the dialplan.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_routed(&self, id: i64, profile: &str) -> Result<(), Error> {
        sqlx::query("UPDATE calls SET profile = ? WHERE id = ?")
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
        sqlx::query("UPDATE calls SET answered_at = ?, codec = ?, sip_status = 200 WHERE id = ?")
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
        sqlx::query(
            "UPDATE calls SET ended_at = ?, end_reason = ?, end_initiator = ?,
                 sip_status = COALESCE(?, sip_status), packets_in = ?, packets_out = ?,
                 concealed_frames = ?, packets_lost = ?, packets_late = ?, packets_duplicated = ?,
                 packets_reordered = ?, jitter_ms = ?, max_jitter_buffer_ms = ?,
                 remote_fraction_lost = ?, remote_cumulative_lost = ?, remote_jitter_ms = ?,
                 dtmf_digits = ?, barge_ins = ?, model = ?, responses = ?,
                 input_text_tokens = ?, input_audio_tokens = ?, cached_text_tokens = ?,
                 cached_audio_tokens = ?, output_text_tokens = ?, output_audio_tokens = ?,
                 billed_seconds = ?, cost_usd = ?
             WHERE id = ?",
        )
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
        .bind(id)
        .execute(&mut *tx)
        .await?;
        history::insert_turns(&mut tx, id, &end.turns).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The calls with this Call-ID, oldest first.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn calls_by_call_id(&self, call_id: &str) -> Result<Vec<CallRow>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(
            "SELECT call_id, from_uri, caller, called, profile, started_at, answered_at, ended_at,
                    end_reason, sip_status, codec, packets_in, packets_out, packets_lost,
                    dtmf_digits, barge_ins
             FROM calls WHERE call_id = ? ORDER BY id",
        )
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The most recent calls, newest first (at most `limit`).
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(
            "SELECT call_id, from_uri, caller, called, profile, started_at, answered_at, ended_at,
                    end_reason, sip_status, codec, packets_in, packets_out, packets_lost,
                    dtmf_digits, barge_ins
             FROM calls ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn call_lifecycle_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
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
            ..CallEnd::default()
        };
        store.call_ended(id, &end, t0).await.expect("end");
        let rows = store.calls_by_call_id("abc@host").await.expect("read");
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.end_reason.as_deref(), Some("remote-bye"));
        assert_eq!(r.codec.as_deref(), Some("PCMU"));
        assert_eq!(r.sip_status, Some(200));
        assert_eq!((r.packets_in, r.packets_out), (10, 20));
        assert_eq!(r.profile.as_deref(), Some("receptionist"));
        // Re-opening applies no migration twice.
        drop(store);
        Store::open(&dir.path().join("t.db")).await.expect("reopen");
    }
}
