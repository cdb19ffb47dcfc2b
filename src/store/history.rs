//! Call history for the staff: transcripts (`call_turns`), the calls list, one call in full,
//! daily totals, and the retention purge (`[privacy]`). Every statement of it is here; the
//! staff commands and the staff page only format what these functions return.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use super::calendar::ToolCallRow;
use super::{rfc3339, Backend, Error, Store};
use crate::bridge::transcript::Turn;
use crate::sql;

/// Which calls [`Store::list_calls`] returns.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Only calls that started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only calls whose caller number contains this text.
    pub caller: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// One call as listed: when, who, where it went, how it ended, what it booked and cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSummary {
    /// SIP Call-ID.
    pub call_id: String,
    /// INVITE received, RFC 3339 UTC.
    pub started_at: String,
    /// Caller's number (P-Asserted-Identity or From user part).
    pub caller: Option<String>,
    /// Called number.
    pub called: Option<String>,
    /// Agent profile or dialplan route that handled the call.
    pub route: Option<String>,
    /// Why the call ended (`remote-bye`, `cancelled`, ...); `None` while in progress.
    pub outcome: Option<String>,
    /// Seconds from the INVITE to the end (`None` while in progress).
    pub duration_secs: Option<f64>,
    /// Appointments booked during the call (successful `book_appointment` tool calls).
    pub bookings: i64,
    /// Estimated cost in USD (`None`: no model session, or no price for its model).
    pub cost_usd: Option<f64>,
}

/// A stored turn, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredTurn {
    /// 1, 2, ... within the call.
    pub turn: i64,
    /// `caller`, `agent` or `system`.
    pub speaker: String,
    /// What was said (for the agent: what the caller heard).
    pub text: String,
    /// Start, ms of call time.
    pub start_ms: i64,
    /// End, ms of call time.
    pub end_ms: i64,
    /// An agent reply cut short by the caller.
    pub truncated: bool,
}

/// Token usage of a call (sums over its responses), in tokens.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct UsageRow {
    /// Realtime model.
    pub model: Option<String>,
    /// Responses that reported usage.
    pub responses: Option<i64>,
    /// Text input tokens (cached included).
    pub input_text_tokens: Option<i64>,
    /// Audio input tokens (cached included).
    pub input_audio_tokens: Option<i64>,
    /// Cached text input tokens.
    pub cached_text_tokens: Option<i64>,
    /// Cached audio input tokens.
    pub cached_audio_tokens: Option<i64>,
    /// Text output tokens.
    pub output_text_tokens: Option<i64>,
    /// Audio output tokens.
    pub output_audio_tokens: Option<i64>,
    /// Seconds billed by time.
    pub billed_seconds: Option<f64>,
}

/// Media quality of a call (see `migrations/{sqlite,postgres}/20261122000003_call_media_stats.sql`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MediaRow {
    /// PCMU or PCMA.
    pub codec: Option<String>,
    /// RTP packets received.
    pub packets_in: i64,
    /// RTP packets sent.
    pub packets_out: i64,
    /// Caller packets never received.
    pub packets_lost: Option<i64>,
    /// Caller packets too late to play.
    pub packets_late: Option<i64>,
    /// 20 ms frames of silence inserted for missing caller audio.
    pub concealed_frames: i64,
    /// RFC 3550 interarrival jitter of the caller's stream, ms.
    pub jitter_ms: Option<f64>,
    /// Fraction of our packets the caller reported lost (0.0–1.0).
    pub remote_fraction_lost: Option<f64>,
    /// Times the caller interrupted the agent.
    pub barge_ins: Option<i64>,
    /// Key presses received.
    pub dtmf_digits: Option<i64>,
    /// Times the call moved to a new model session (session rollover).
    pub rollovers: i64,
    /// Caller frames the echo gate replaced with silence (issue 15).
    pub echo_gated_frames: Option<i64>,
    /// `speech_started` during agent audio explained by its echo.
    pub false_barge_ins: Option<i64>,
    /// `speech_started` during agent audio with the caller's own voice.
    pub true_barge_ins: Option<i64>,
}

/// One call in full: summary, end, media, usage, transcript and tool calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallDetail {
    /// The list fields.
    #[serde(flatten)]
    pub summary: CallSummary,
    /// 200 OK sent, RFC 3339 UTC.
    pub answered_at: Option<String>,
    /// End, RFC 3339 UTC.
    pub ended_at: Option<String>,
    /// `local` or `remote`.
    pub end_initiator: Option<String>,
    /// Final response to the INVITE.
    pub sip_status: Option<i64>,
    /// Media quality.
    pub media: MediaRow,
    /// Token usage.
    pub usage: UsageRow,
    /// The conversation, in order.
    pub turns: Vec<StoredTurn>,
    /// The model's tool calls, in order.
    pub tool_calls: Vec<ToolCallRow>,
}

/// Totals of one UTC day, for `frontdesk calls summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaySummary {
    /// The UTC date.
    pub date: String,
    /// Calls that started that day.
    pub calls: i64,
    /// Of them, answered (200 OK sent).
    pub answered: i64,
    /// Minutes from INVITE to end, summed.
    pub minutes: f64,
    /// Appointments booked by those calls.
    pub bookings: i64,
    /// Input tokens (text + audio).
    pub input_tokens: i64,
    /// Output tokens (text + audio).
    pub output_tokens: i64,
    /// Estimated cost in USD of the calls with a price.
    pub cost_usd: f64,
}

/// What [`Store::purge`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PurgeReport {
    /// Call rows deleted (with their turns and tool calls).
    pub calls: u64,
    /// Transcript turns deleted (of calls older than the transcript retention, and of the
    /// deleted calls).
    pub turns: u64,
    /// Tool-call rows deleted (of the deleted calls).
    pub tool_calls: u64,
}

/// Writes a call's turns, numbered from 1 in order.
pub(super) async fn insert_turns(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    call: i64,
    turns: &[Turn],
) -> Result<(), Error> {
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (n, t) in turns.iter().enumerate() {
        sqlx::query(sql!(
            backend,
            "INSERT INTO call_turns (call, turn, speaker, text, start_ms, end_ms, truncated)
             VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(call)
        .bind(int(n as u64 + 1))
        .bind(t.speaker.as_str())
        .bind(&t.text)
        .bind(int(t.start_ms))
        .bind(int(t.end_ms))
        .bind(i64::from(t.truncated))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

const SUMMARY_COLUMNS: &str = "c.id, c.call_id, c.started_at, c.ended_at, c.caller, c.called,
     c.profile, c.end_reason, c.cost_usd,
     (SELECT COUNT(*) FROM tool_calls t
       WHERE t.call_id = c.call_id AND t.name = 'book_appointment' AND t.error IS NULL) AS bookings";

fn seconds_between(from: &str, to: Option<&str>) -> Option<f64> {
    let from = DateTime::parse_from_rfc3339(from).ok()?;
    let to = DateTime::parse_from_rfc3339(to?).ok()?;
    Some((to - from).num_milliseconds().max(0) as f64 / 1000.0)
}

fn summary_of(row: &sqlx::any::AnyRow) -> Result<CallSummary, sqlx::Error> {
    let started_at: String = row.try_get("started_at")?;
    let ended_at: Option<String> = row.try_get("ended_at")?;
    Ok(CallSummary {
        call_id: row.try_get("call_id")?,
        duration_secs: seconds_between(&started_at, ended_at.as_deref()),
        started_at,
        caller: row.try_get("caller")?,
        called: row.try_get("called")?,
        route: row.try_get("profile")?,
        outcome: row.try_get("end_reason")?,
        bookings: row.try_get("bookings")?,
        cost_usd: row.try_get("cost_usd")?,
    })
}

impl Store {
    /// Calls, newest first, filtered by `filter`.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn list_calls(&self, filter: &CallFilter) -> Result<Vec<CallSummary>, Error> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls c
             WHERE (? IS NULL OR c.started_at >= ?)
               AND (? IS NULL OR {contains} > 0)
             ORDER BY c.started_at DESC, c.id DESC LIMIT ?",
            contains = match self.backend() {
                Backend::Sqlite => "instr(c.caller, ?)",
                Backend::Postgres => "strpos(c.caller, ?)",
            }
        );
        let since = filter.since.map(rfc3339);
        // Built from constants only; every value is bound.
        let rows = sqlx::query(super::sql::dynamic(self.backend(), &sql))
            .bind(&since)
            .bind(&since)
            .bind(&filter.caller)
            .bind(&filter.caller)
            .bind(i64::from(filter.limit))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(summary_of).collect::<Result<_, _>>()?)
    }

    /// The most recent call with this SIP Call-ID, in full; `None` if there is none.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn call_detail(&self, call_id: &str) -> Result<Option<CallDetail>, Error> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, c.answered_at, c.end_initiator, c.sip_status, c.codec,
                    c.packets_in, c.packets_out, c.packets_lost, c.packets_late,
                    c.concealed_frames, c.jitter_ms, c.remote_fraction_lost, c.barge_ins,
                    c.dtmf_digits, c.rollovers, c.echo_gated_frames, c.false_barge_ins,
                    c.true_barge_ins, c.model, c.responses, c.input_text_tokens,
                    c.input_audio_tokens, c.cached_text_tokens, c.cached_audio_tokens,
                    c.output_text_tokens, c.output_audio_tokens, c.billed_seconds
             FROM calls c WHERE c.call_id = ? ORDER BY c.id DESC LIMIT 1"
        );
        let Some(row) = sqlx::query(super::sql::dynamic(self.backend(), &sql))
            .bind(call_id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        let turns = sqlx::query(sql!(
            self.backend(),
            "SELECT turn, speaker, text, start_ms, end_ms, truncated FROM call_turns
             WHERE call = ? ORDER BY turn"
        ))
        .bind(id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(StoredTurn {
                turn: r.try_get("turn")?,
                speaker: r.try_get("speaker")?,
                text: r.try_get("text")?,
                start_ms: r.try_get("start_ms")?,
                end_ms: r.try_get("end_ms")?,
                truncated: r.try_get::<i64, _>("truncated")? != 0,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let tool_calls = super::calendar::tool_calls(self, call_id).await?;
        Ok(Some(CallDetail {
            summary: summary_of(&row)?,
            answered_at: row.try_get("answered_at")?,
            ended_at: row.try_get("ended_at")?,
            end_initiator: row.try_get("end_initiator")?,
            sip_status: row.try_get("sip_status")?,
            media: MediaRow {
                codec: row.try_get("codec")?,
                packets_in: row.try_get("packets_in")?,
                packets_out: row.try_get("packets_out")?,
                packets_lost: row.try_get("packets_lost")?,
                packets_late: row.try_get("packets_late")?,
                concealed_frames: row.try_get("concealed_frames")?,
                jitter_ms: row.try_get("jitter_ms")?,
                remote_fraction_lost: row.try_get("remote_fraction_lost")?,
                barge_ins: row.try_get("barge_ins")?,
                dtmf_digits: row.try_get("dtmf_digits")?,
                rollovers: row.try_get("rollovers")?,
                echo_gated_frames: row.try_get("echo_gated_frames")?,
                false_barge_ins: row.try_get("false_barge_ins")?,
                true_barge_ins: row.try_get("true_barge_ins")?,
            },
            usage: UsageRow {
                model: row.try_get("model")?,
                responses: row.try_get("responses")?,
                input_text_tokens: row.try_get("input_text_tokens")?,
                input_audio_tokens: row.try_get("input_audio_tokens")?,
                cached_text_tokens: row.try_get("cached_text_tokens")?,
                cached_audio_tokens: row.try_get("cached_audio_tokens")?,
                output_text_tokens: row.try_get("output_text_tokens")?,
                output_audio_tokens: row.try_get("output_audio_tokens")?,
                billed_seconds: row.try_get("billed_seconds")?,
            },
            turns,
            tool_calls,
        }))
    }

    /// Totals per UTC day of the calls that started on or after `since` (a UTC date), newest
    /// day first.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn daily_summary(&self, since: NaiveDate) -> Result<Vec<DaySummary>, Error> {
        let rows = sqlx::query(super::sql::dynamic(
            self.backend(),
            &format!(
            "SELECT {SUMMARY_COLUMNS}, c.answered_at,
                    COALESCE(c.input_text_tokens, 0) + COALESCE(c.input_audio_tokens, 0) AS input_tokens,
                    COALESCE(c.output_text_tokens, 0) + COALESCE(c.output_audio_tokens, 0) AS output_tokens
             FROM calls c WHERE c.started_at >= ? ORDER BY c.started_at DESC"
            ),
        ))
        .bind(since.format("%Y-%m-%d").to_string())
        .fetch_all(self.pool())
        .await?;
        let mut days: Vec<DaySummary> = Vec::new();
        for row in &rows {
            let s = summary_of(row)?;
            let date = s.started_at.get(..10).unwrap_or("").to_owned();
            let answered: Option<String> = row.try_get("answered_at")?;
            let input: i64 = row.try_get("input_tokens")?;
            let output: i64 = row.try_get("output_tokens")?;
            if days.last().map(|d| d.date.as_str()) != Some(date.as_str()) {
                days.push(DaySummary {
                    date,
                    calls: 0,
                    answered: 0,
                    minutes: 0.0,
                    bookings: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    cost_usd: 0.0,
                });
            }
            if let Some(d) = days.last_mut() {
                d.calls += 1;
                d.answered += i64::from(answered.is_some());
                d.minutes += s.duration_secs.unwrap_or(0.0) / 60.0;
                d.bookings += s.bookings;
                d.input_tokens += input;
                d.output_tokens += output;
                d.cost_usd += s.cost_usd.unwrap_or(0.0);
            }
        }
        Ok(days)
    }

    /// Applies the retention (`[privacy]`): deletes the calls that started more than
    /// `keep_calls_days` days before `now` (with their turns and tool calls), and the transcript
    /// turns of calls that started more than `keep_transcripts_days` days before `now`. `None`
    /// keeps forever. Appointments are never deleted.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure (nothing is deleted then).
    pub async fn purge(
        &self,
        now: DateTime<Utc>,
        keep_calls_days: Option<u32>,
        keep_transcripts_days: Option<u32>,
    ) -> Result<PurgeReport, Error> {
        let cutoff = |days: u32| rfc3339(now - chrono::Duration::days(i64::from(days)));
        let mut report = PurgeReport::default();
        let bk = self.backend();
        let mut tx = self.pool().begin().await?;
        if let Some(days) = keep_transcripts_days {
            report.turns += sqlx::query(sql!(
                bk,
                "DELETE FROM call_turns WHERE call IN (SELECT id FROM calls WHERE started_at < ?)"
            ))
            .bind(cutoff(days))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if let Some(days) = keep_calls_days {
            let cut = cutoff(days);
            report.turns += sqlx::query(sql!(
                bk,
                "DELETE FROM call_turns WHERE call IN (SELECT id FROM calls WHERE started_at < ?)"
            ))
            .bind(&cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            report.tool_calls = sqlx::query(sql!(
                bk,
                "DELETE FROM tool_calls WHERE call_id IN
                   (SELECT call_id FROM calls WHERE started_at < ?)
                 AND call_id NOT IN (SELECT call_id FROM calls WHERE started_at >= ?)"
            ))
            .bind(&cut)
            .bind(&cut)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            report.calls = sqlx::query(sql!(bk, "DELETE FROM calls WHERE started_at < ?"))
                .bind(&cut)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::transcript::Speaker;
    use crate::store::{CallEnd, NewCall};

    async fn call(store: &Store, call_id: &str, caller: &str, at: DateTime<Utc>) -> i64 {
        store
            .call_started(&NewCall {
                call_id,
                from_uri: "sip:x@host",
                to_uri: "sip:frontdesk@host",
                caller: Some(caller),
                called: Some("frontdesk"),
                transport: "udp",
                started_at: at,
            })
            .await
            .expect("insert")
    }

    fn turn(speaker: Speaker, text: &str, start_ms: u64) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            start_ms,
            end_ms: start_ms + 500,
            truncated: false,
        }
    }

    #[tokio::test]
    async fn a_call_reads_back_with_turns_usage_and_cost() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (store, _) in crate::store::tests::fresh_stores(dir.path()).await {
            let t0 = Utc::now();
            let id = call(&store, "c1@host", "+4915112345678", t0).await;
            store.call_answered(id, "PCMU", t0).await.expect("answer");
            let mut usage = crate::pricing::CallUsage::default();
            usage.add(&crate::realtime::protocol::Usage {
                input_tokens: 100,
                output_tokens: 50,
                total_tokens: 150,
                input_text_tokens: 80,
                input_audio_tokens: 20,
                output_audio_tokens: 50,
                ..Default::default()
            });
            let end = CallEnd {
                end_reason: "remote-bye".into(),
                end_initiator: "remote".into(),
                model: Some("gpt-realtime".into()),
                usage: Some(usage),
                cost_usd: Some(0.0042),
                turns: vec![
                    turn(Speaker::Agent, "Hello.", 0),
                    turn(Speaker::Caller, "Hi, a cleaning please.", 1000),
                    Turn {
                        truncated: true,
                        ..turn(Speaker::Agent, "We have", 2000)
                    },
                ],
                ..CallEnd::default()
            };
            store
                .call_ended(id, &end, t0 + chrono::Duration::seconds(90))
                .await
                .expect("end");
            let d = store
                .call_detail("c1@host")
                .await
                .expect("read")
                .expect("found");
            assert_eq!(d.summary.outcome.as_deref(), Some("remote-bye"));
            assert_eq!(d.summary.duration_secs, Some(90.0));
            assert_eq!(d.summary.cost_usd, Some(0.0042));
            assert_eq!(d.usage.input_text_tokens, Some(80));
            assert_eq!(d.usage.output_audio_tokens, Some(50));
            let texts: Vec<_> = d
                .turns
                .iter()
                .map(|t| (t.turn, t.speaker.as_str(), t.text.as_str(), t.truncated))
                .collect();
            assert_eq!(
                texts,
                [
                    (1, "agent", "Hello.", false),
                    (2, "caller", "Hi, a cleaning please.", false),
                    (3, "agent", "We have", true)
                ]
            );
            assert!(store.call_detail("nope").await.expect("read").is_none());
            // The list filters by caller and time.
            let all = store
                .list_calls(&CallFilter {
                    limit: 10,
                    ..CallFilter::default()
                })
                .await
                .expect("list");
            assert_eq!(all.len(), 1);
            let none = store
                .list_calls(&CallFilter {
                    caller: Some("999".into()),
                    limit: 10,
                    ..CallFilter::default()
                })
                .await
                .expect("list");
            assert!(none.is_empty());
            let later = store
                .list_calls(&CallFilter {
                    since: Some(t0 + chrono::Duration::seconds(1)),
                    limit: 10,
                    ..CallFilter::default()
                })
                .await
                .expect("list");
            assert!(later.is_empty());
            let days = store.daily_summary(t0.date_naive()).await.expect("summary");
            assert_eq!(days.len(), 1);
            assert_eq!((days[0].calls, days[0].answered), (1, 1));
            assert_eq!((days[0].input_tokens, days[0].output_tokens), (100, 50));
            assert!((days[0].minutes - 1.5).abs() < 1e-9);
        }
    }

    #[tokio::test]
    async fn purge_removes_only_rows_older_than_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (store, _) in crate::store::tests::fresh_stores(dir.path()).await {
            let now = Utc::now();
            let days = |d: i64| now - chrono::Duration::days(d);
            let with_turns = |text: &str| CallEnd {
                end_reason: "remote-bye".into(),
                turns: vec![turn(Speaker::Caller, text, 0)],
                ..CallEnd::default()
            };
            for (call_id, age) in [("old", 100), ("middle", 40), ("new", 1)] {
                let id = call(&store, call_id, "+4930111", days(age)).await;
                store
                    .call_ended(id, &with_turns(call_id), days(age))
                    .await
                    .expect("end");
            }
            sqlx::query(
                "INSERT INTO tool_calls (call_id, name, arguments, result, duration_ms, created_at)
             VALUES ('old', 'get_business_info', '{}', '{}', 1, '2026-01-01T00:00:00.000Z')",
            )
            .execute(store.pool())
            .await
            .expect("tool call");
            let report = store.purge(now, Some(90), Some(30)).await.expect("purge");
            assert_eq!(
                report,
                PurgeReport {
                    calls: 1,
                    turns: 2,
                    tool_calls: 1
                }
            );
            assert!(store.call_detail("old").await.expect("read").is_none());
            let middle = store
                .call_detail("middle")
                .await
                .expect("read")
                .expect("kept");
            assert!(middle.turns.is_empty(), "transcript older than 30 days");
            let new = store.call_detail("new").await.expect("read").expect("kept");
            assert_eq!(new.turns.len(), 1);
            // Nothing left to purge; `None` keeps forever.
            let again = store.purge(now, Some(90), Some(30)).await.expect("purge");
            assert_eq!(again, PurgeReport::default());
            let none = store.purge(now, None, None).await.expect("purge");
            assert_eq!(none, PurgeReport::default());
            assert_eq!(new.summary.caller.as_deref(), Some("+4930111"));
        }
    }
}
