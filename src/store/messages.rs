//! `messages`: what callers said when no model session could be opened and their agent's
//! `on_model_failure` is `take_message` (issue 10). The audio is a WAV file written by the call
//! task; this table records who left it, when, how long it is and where it is.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{rfc3339, Error, Store};
use crate::sql;

/// A message to record (the WAV file is already written).
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// SIP Call-ID of the call.
    pub call_id: &'a str,
    /// Caller's number.
    pub caller: Option<&'a str>,
    /// Number dialled.
    pub called: Option<&'a str>,
    /// Agent profile whose fallback took the message.
    pub agent: Option<&'a str>,
    /// When the recording started (UTC).
    pub recorded_at: DateTime<Utc>,
    /// Length of the audio, ms.
    pub duration_ms: i64,
    /// The WAV file.
    pub path: &'a str,
}

/// A stored message, as listed (`frontdesk messages list`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StoredMessage {
    /// SIP Call-ID of the call.
    pub call_id: String,
    /// Caller's number.
    pub caller: Option<String>,
    /// Number dialled.
    pub called: Option<String>,
    /// Agent profile whose fallback took the message.
    pub agent: Option<String>,
    /// When the recording started, RFC 3339 UTC.
    pub recorded_at: String,
    /// Length of the audio, ms.
    pub duration_ms: i64,
    /// The WAV file (8 kHz µ-law).
    pub path: String,
}

impl Store {
    /// Records a message.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn message_recorded(&self, m: &NewMessage<'_>) -> Result<i64, Error> {
        let id: i64 = sqlx::query_scalar(sql!(
            self.backend,
            "INSERT INTO messages (call_id, caller, called, agent, recorded_at, duration_ms, path)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
        ))
        .bind(m.call_id)
        .bind(m.caller)
        .bind(m.called)
        .bind(m.agent)
        .bind(rfc3339(m.recorded_at))
        .bind(m.duration_ms)
        .bind(m.path)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Messages, newest first, at most `limit`, recorded at or after `since` when given.
    ///
    /// # Errors
    /// [`Error::Query`] on database failure.
    pub async fn list_messages(
        &self,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, Error> {
        let since = since.map(rfc3339);
        let rows = sqlx::query_as::<_, StoredMessage>(sql!(
            self.backend,
            "SELECT call_id, caller, called, agent, recorded_at, duration_ms, path FROM messages
             WHERE (? IS NULL OR recorded_at >= ?)
             ORDER BY recorded_at DESC, id DESC LIMIT ?"
        ))
        .bind(&since)
        .bind(&since)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// The messages as a table for staff: time (UTC), caller, length, agent, file.
pub fn list_text(messages: &[StoredMessage]) -> String {
    if messages.is_empty() {
        return "no messages\n".to_owned();
    }
    let mut out = format!(
        "{:<20}  {:<16}  {:>7}  {:<14}  {}\n",
        "recorded (UTC)", "caller", "length", "agent", "file"
    );
    for m in messages {
        let when = m
            .recorded_at
            .get(..19)
            .unwrap_or(&m.recorded_at)
            .replace('T', " ");
        out.push_str(&format!(
            "{:<20}  {:<16}  {:>6.1}s  {:<14}  {}\n",
            when,
            m.caller.as_deref().unwrap_or("anonymous"),
            m.duration_ms as f64 / 1000.0,
            m.agent.as_deref().unwrap_or("-"),
            m.path
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_are_stored_and_listed_newest_first_on_both_backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (store, target) in super::super::tests::fresh_stores(dir.path()).await {
            let t0 = Utc::now();
            for (i, caller) in [Some("+4930111"), None].into_iter().enumerate() {
                let path = format!("/var/messages/{i}.wav");
                store
                    .message_recorded(&NewMessage {
                        call_id: &format!("call-{i}"),
                        caller,
                        called: Some("100"),
                        agent: Some("reception"),
                        recorded_at: t0 + chrono::Duration::seconds(i as i64),
                        duration_ms: 4_500,
                        path: &path,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{target}: {e}"));
            }
            let all = store.list_messages(None, 10).await.expect("list");
            assert_eq!(all.len(), 2, "{target}");
            assert_eq!(all[0].call_id, "call-1", "{target}: newest first");
            assert_eq!(all[1].caller.as_deref(), Some("+4930111"));
            let later = store
                .list_messages(Some(t0 + chrono::Duration::milliseconds(500)), 10)
                .await
                .expect("list");
            assert_eq!(later.len(), 1, "{target}");
            let text = list_text(&all);
            assert!(
                text.contains("+4930111") && text.contains("anonymous") && text.contains("4.5s"),
                "{text}"
            );
        }
    }
}
