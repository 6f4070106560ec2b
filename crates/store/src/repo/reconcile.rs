//! Brings the stats counters back to the tables' counts.
//!
//! Triggers keep the counters exact for every writer that fires them; a writer with
//! triggers off (`pg_restore --disable-triggers`, a logical replication subscriber, which
//! applies changes with `session_replication_role = replica`, a bulk load) leaves them
//! off. Every so often the server counts the tables and sums the counters in one
//! statement (one snapshot), and adds the difference to the counters as a delta. Deltas
//! commute: a write that commits after the snapshot adds its own delta through its
//! trigger, before or after the correction, and the sum still comes out equal to the
//! counts. No writer waits (unlike `letip recount-stats`, which locks the tables), and
//! one reconciler at a time runs across instances (an advisory lock, which `letip
//! recount-stats` takes too), so no difference is added twice and none is added on top
//! of a recount.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The advisory lock that one reconcile or recount at a time holds, across instances.
pub(crate) const STATS_LOCK: &str = "hashtextextended('letip_stats_reconcile', 0)";

/// The tables' counts minus the counters, in one snapshot.
#[derive(Debug, QueryableByName)]
struct Diff {
    #[diesel(sql_type = BigInt)]
    businesses: i64,
    #[diesel(sql_type = BigInt)]
    enriched: i64,
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    contacts: i64,
    #[diesel(sql_type = BigInt)]
    messages_sent: i64,
    #[diesel(sql_type = BigInt)]
    messages_generated: i64,
}

const DIFF_SQL: &str = "\
SELECT b.total - s.businesses AS businesses, b.enriched - s.enriched AS enriched,
       b.pending - s.pending AS pending, c.total - s.contacts AS contacts,
       m.sent - s.messages_sent AS messages_sent,
       m.generated - s.messages_generated AS messages_generated
FROM (SELECT count(*) AS total,
             count(*) FILTER (WHERE enrichment_status = 'enriched') AS enriched,
             count(*) FILTER (WHERE enrichment_status = 'pending') AS pending
      FROM business) AS b,
     (SELECT count(*) AS total FROM contact) AS c,
     (SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
             count(*) FILTER (WHERE status = 'generated') AS generated
      FROM outreach_message) AS m,
     (SELECT coalesce(sum(businesses), 0)::int8 AS businesses,
             coalesce(sum(enriched), 0)::int8 AS enriched,
             coalesce(sum(pending), 0)::int8 AS pending,
             coalesce(sum(contacts), 0)::int8 AS contacts,
             coalesce(sum(messages_sent), 0)::int8 AS messages_sent,
             coalesce(sum(messages_generated), 0)::int8 AS messages_generated
      FROM letip_stats) AS s";

/// Corrects the counters; answers how many were off. Each one corrected is counted in
/// `letip_stats_corrections_total`, by counter.
pub(super) async fn run(conn: &mut AsyncPgConnection) -> QueryResult<u32> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    conn.transaction(async |c| {
        // Another instance reconciling (or `letip recount-stats` recounting) now: its
        // result is this one's, nothing to add.
        let lock: Locked = diesel::sql_query(format!(
            "SELECT pg_try_advisory_xact_lock({STATS_LOCK}) AS locked"
        ))
        .get_result(c)
        .await?;
        if !lock.locked {
            return Ok(0);
        }
        let d: Diff = diesel::sql_query(DIFF_SQL).get_result(c).await?;
        let off: Vec<(&'static str, i64)> = [
            ("businesses", d.businesses),
            ("enriched", d.enriched),
            ("pending", d.pending),
            ("contacts", d.contacts),
            ("messages_sent", d.messages_sent),
            ("messages_generated", d.messages_generated),
        ]
        .into_iter()
        .filter(|(_, delta)| *delta != 0)
        .collect();
        if off.is_empty() {
            return Ok(0);
        }
        diesel::sql_query("SELECT letip_stats_add($1, $2, $3, $4, $5, $6)")
            .bind::<BigInt, _>(d.businesses)
            .bind::<BigInt, _>(d.enriched)
            .bind::<BigInt, _>(d.pending)
            .bind::<BigInt, _>(d.contacts)
            .bind::<BigInt, _>(d.messages_sent)
            .bind::<BigInt, _>(d.messages_generated)
            .execute(c)
            .await?;
        for (counter, delta) in &off {
            metrics::counter!("letip_stats_corrections_total", "counter" => *counter).increment(1);
            tracing::warn!(
                counter,
                delta,
                "a stats counter was off from its table (a write made with triggers off); corrected"
            );
        }
        Ok(u32::try_from(off.len()).unwrap_or(u32::MAX))
    })
    .await
}
