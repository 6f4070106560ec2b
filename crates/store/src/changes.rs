//! The change feed: every committed change to the lead tables, as the triggers of
//! migration `change_notifications` announce it on the channel `letip_change` (inside
//! the writing transaction, so at commit and never for a rollback).
//!
//! [`listen`] keeps one dedicated connection that LISTENs, reconnects by itself with
//! backoff, and reports [`FeedEvent::Lost`] when it is interrupted (or cannot connect at
//! first) and [`FeedEvent::Resumed`] after any interruption, since announcements made
//! meanwhile are lost. Announcements of this process's own writes
//! (those whose session set `letip.origin` to `own`) are skipped.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::{Stream, StreamExt};
use letip_domain::{Change, EnrichmentStatus, Facets, FeedEvent, RowChange};
use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The channel the triggers notify.
pub const CHANNEL: &str = "letip_change";

/// How long the listening connection may stay silent before it is checked with a query.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long connecting or a check may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait between two attempts to reconnect: PostgreSQL back is followed within
/// about this.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Most announcements applied as one batch.
const BATCH: usize = 256;

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    o: String,
    t: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    id: Option<i32>,
    #[serde(default)]
    b: Option<i32>,
    #[serde(default)]
    f: Vec<(Option<String>, Option<String>, String)>,
}

/// Parses one announcement. `None` for one of `own`'s writes or one this version does
/// not know; an unreadable one is [`Change::Unknown`], so nothing is left stale.
fn parse(payload: &str, own: Option<&str>) -> Option<Change> {
    let Ok(p) = serde_json::from_str::<Payload>(payload) else {
        tracing::warn!(payload, "unreadable change announcement");
        return Some(Change::Unknown);
    };
    if own.is_some_and(|own| own == p.o) {
        return None;
    }
    let unknown = || Some(Change::Unknown);
    Some(match p.t.as_str() {
        "business" => {
            let Some(id) = p.id else { return unknown() };
            let row = match p.op.as_str() {
                "insert" => RowChange::Inserted,
                "delete" => RowChange::Deleted,
                _ => RowChange::Updated,
            };
            let mut facets = Vec::with_capacity(p.f.len());
            for (city, industry, status) in p.f {
                // A status this version does not know: treat the lists as unknown.
                let Ok(status) = EnrichmentStatus::parse("status", &status) else {
                    facets.clear();
                    break;
                };
                facets.push(Facets {
                    city,
                    industry,
                    status,
                });
            }
            Change::Business { id, row, facets }
        }
        "contact" => Change::Contact { business_id: p.b? },
        "message" => Change::Message { business_id: p.b? },
        "log" => Change::EnrichmentLog { business_id: p.b? },
        _ => Change::Unknown,
    })
}

async fn connect(url: &str) -> Result<AsyncPgConnection, String> {
    let connect = async {
        let mut conn = AsyncPgConnection::establish(url)
            .await
            .map_err(|e| e.to_string())?;
        conn.batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(conn)
    };
    tokio::time::timeout(CALL_TIMEOUT, connect)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// Follows one connection until it fails. Answers `Err` when the receiver is gone.
async fn follow(
    conn: &mut AsyncPgConnection,
    own: Option<&str>,
    tx: &mpsc::Sender<FeedEvent>,
) -> Result<(), ()> {
    loop {
        let mut batch = Vec::new();
        let mut broken = false;
        {
            let mut notes = std::pin::pin!(conn.notifications_stream());
            match tokio::time::timeout(CHECK_EVERY, notes.next()).await {
                Ok(Some(Ok(n))) => batch.extend(parse(&n.payload, own)),
                Ok(Some(Err(_)) | None) => broken = true,
                Err(_) => {}
            }
            // Whatever else has already arrived goes in the same batch.
            while !broken && batch.len() < BATCH {
                match futures_util::FutureExt::now_or_never(notes.next()) {
                    Some(Some(Ok(n))) => batch.extend(parse(&n.payload, own)),
                    Some(Some(Err(_)) | None) => broken = true,
                    None => break,
                }
            }
        }
        if !batch.is_empty() && tx.send(FeedEvent::Changed(batch)).await.is_err() {
            return Err(());
        }
        if tx.is_closed() {
            return Err(());
        }
        if broken {
            return Ok(());
        }
        // Quiet for a while: make sure the connection still answers.
        let alive = tokio::time::timeout(
            CALL_TIMEOUT,
            diesel::sql_query("SELECT 1").execute(&mut *conn),
        )
        .await;
        if !matches!(alive, Ok(Ok(_))) {
            return Ok(());
        }
    }
}

/// Starts following the change feed of the database at `url` on a task of its own; it
/// stops when the stream is dropped. `own` is the origin this process's pool sets (see
/// [`crate::PoolOptions::origin`]): its announcements are skipped, as the process
/// invalidated those itself.
pub async fn listen(
    url: String,
    own: Option<Uuid>,
) -> impl Stream<Item = FeedEvent> + Send + 'static {
    // The first connection is made before answering, so a server that starts serving
    // is already subscribed (if PostgreSQL answers): nothing committed after that is
    // missed.
    let first = connect(&url).await;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let own = own.map(|u| u.to_string());
        let mut connected_before = false;
        let mut lost_told = false;
        let mut backoff = Duration::from_millis(100);
        let mut next = Some(first);
        while !tx.is_closed() {
            let attempt = match next.take() {
                Some(first) => first,
                None => connect(&url).await,
            };
            match attempt {
                Ok(mut conn) => {
                    backoff = Duration::from_millis(100);
                    if connected_before {
                        tracing::info!("change feed resumed");
                        if tx.send(FeedEvent::Resumed).await.is_err() {
                            return;
                        }
                    }
                    connected_before = true;
                    if follow(&mut conn, own.as_deref(), &tx).await.is_err() {
                        return;
                    }
                    tracing::warn!("change feed interrupted; reconnecting");
                    lost_told = true;
                    if tx.send(FeedEvent::Lost).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "change feed cannot connect");
                    if !lost_told {
                        lost_told = true;
                        if tx.send(FeedEvent::Lost).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    })
}

/// Announces that anything may have changed (after a bulk load that announced nothing).
pub(crate) async fn announce_reset(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    conn.batch_execute(&format!("NOTIFY {CHANNEL}, '{{\"t\":\"reset\"}}'"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse_into_changes() {
        let own = Some("me");
        assert_eq!(
            parse(
                r#"{"o":"x","t":"business","op":"update","id":4,"f":[["Howell",null,"pending"],["Howell","Dental","enriched"]]}"#,
                own
            ),
            Some(Change::Business {
                id: 4,
                row: RowChange::Updated,
                facets: vec![
                    Facets {
                        city: Some("Howell".into()),
                        industry: None,
                        status: EnrichmentStatus::Pending
                    },
                    Facets {
                        city: Some("Howell".into()),
                        industry: Some("Dental".into()),
                        status: EnrichmentStatus::Enriched
                    },
                ],
            })
        );
        assert_eq!(parse(r#"{"o":"me","t":"contact","b":4}"#, own), None);
        assert_eq!(
            parse(r#"{"o":"","t":"message","b":4}"#, own),
            Some(Change::Message { business_id: 4 })
        );
        assert_eq!(parse(r#"{"t":"reset"}"#, own), Some(Change::Unknown));
        assert_eq!(parse("not json", own), Some(Change::Unknown));
        assert_eq!(
            parse(
                r#"{"t":"business","op":"insert","id":1,"f":[["a","b","archived"]]}"#,
                own
            ),
            Some(Change::Business {
                id: 1,
                row: RowChange::Inserted,
                facets: vec![]
            })
        );
    }
}
