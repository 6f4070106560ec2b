//! Fencing the old primary after a Sentinel failover.
//!
//! Sentinel promotes a replica at once, but turns an old primary that is still running
//! into a replica of the new one only seconds later (it waits for its own view to
//! settle). Until then the old primary answers as a primary: a process still connected
//! to it and one that connected since to the new primary would use two servers, and an
//! invalidation made on one would not reach lookups on the other.
//!
//! So before a connection to a promoted primary serves anything, the cache does what
//! Sentinel will do: every server the sentinels list for the group that still answers
//! as a primary *in the history the connected server was promoted from* (its
//! `master_replid` is the connected server's `master_replid2`) is made a replica of the
//! connected server, and its clients are disconnected (`REPLICAOF`, `CLIENT KILL TYPE
//! normal`, `CLIENT KILL TYPE pubsub`, in one `MULTI`, as Sentinel sends them). Their
//! next connections go through the sentinels and the role check to the new primary.
//!
//! The replication-id condition means nothing else is ever demoted: a server that
//! restarted, or that was promoted again since, runs another history. A server that
//! does not answer is left alone (it is down, or cut off from this process, where no
//! client of this one reaches it either); a server that refuses the commands (an ACL,
//! a renamed command) is logged: then the window stays open until Sentinel closes it.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis::{self, ConnectionAddr, IntoConnectionInfo, RedisResult};

use super::config::SentinelConfig;
use super::identity::info_field;

/// What the connected server's `INFO` says of the history it was promoted from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Promotion {
    /// `master_replid2`: the replication id of the primary this server was promoted
    /// from, while it keeps it.
    pub(crate) previous_replid: String,
    /// `run_id` of the connected server.
    pub(crate) run_id: String,
}

impl Promotion {
    /// From an `INFO` text: `None` for a server that was never promoted (its
    /// `master_replid2` is all zeros or absent).
    pub(crate) fn of(info: &str) -> Option<Self> {
        let previous_replid = info_field(info, "master_replid2").unwrap_or_default();
        if previous_replid.is_empty() || previous_replid.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(Self {
            previous_replid: previous_replid.to_owned(),
            run_id: info_field(info, "run_id").unwrap_or_default().to_owned(),
        })
    }
}

/// A server as `SENTINEL MASTER` and `SENTINEL REPLICAS` list it.
type Listed = HashMap<String, String>;

fn address(fields: &Listed) -> Option<(String, u16)> {
    Some((fields.get("ip")?.clone(), fields.get("port")?.parse().ok()?))
}

/// Reaches a server of the group with `url`'s password, database and TLS mode.
async fn connect(
    url: &str,
    (host, port): &(String, u16),
) -> RedisResult<redis::aio::MultiplexedConnection> {
    let info = url.into_connection_info()?;
    let addr = match info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => ConnectionAddr::Tcp(host.clone(), *port),
    };
    let client = redis::Client::open(info.set_addr(addr))?;
    client.get_multiplexed_async_connection().await
}

/// The `INFO` text of a server of the group.
async fn info(
    url: &str,
    server: &(String, u16),
) -> RedisResult<(String, redis::aio::MultiplexedConnection)> {
    let mut c = connect(url, server).await?;
    let text: String = redis::cmd("INFO").query_async(&mut c).await?;
    Ok((text, c))
}

/// Asks the sentinels in turn for the primary they name and the replicas they list, and
/// answers the first view whose primary is the connected server (a sentinel that has
/// not learnt of the failover yet names the old one).
async fn listed(
    url: &str,
    sentinel: &SentinelConfig,
    promoted: &Promotion,
    timeout: Duration,
) -> Option<((String, u16), Vec<(String, u16)>)> {
    for sentinel_url in sentinel.urls() {
        let asked = async {
            let client = redis::Client::open(sentinel_url.as_str())?;
            let mut c = client.get_multiplexed_async_connection().await?;
            let master: Listed = redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(&sentinel.master)
                .query_async(&mut c)
                .await?;
            let replicas: Vec<Listed> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(&sentinel.master)
                .query_async(&mut c)
                .await?;
            let primary = address(&master).ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Client, "a primary without an address"))
            })?;
            let (text, _) = info(url, &primary).await?;
            let connected = info_field(&text, "run_id") == Some(promoted.run_id.as_str());
            RedisResult::Ok(connected.then(|| {
                let others = replicas.iter().filter_map(address).collect();
                (primary, others)
            }))
        };
        if let Ok(Ok(Some(view))) = tokio::time::timeout(timeout, asked).await {
            return Some(view);
        }
    }
    None
}

/// Demotes every listed server still answering as a primary in the history `promoted`
/// was promoted from, to a replica of the connected server; answers whether the
/// sentinels were asked and every listed server either answered or could not be reached.
/// `url` gives the password, database and TLS mode of the group's servers.
pub(crate) async fn fence(
    url: &str,
    sentinel: &SentinelConfig,
    promoted: &Promotion,
    timeout: Duration,
) -> bool {
    let Some((primary, servers)) = listed(url, sentinel, promoted, timeout).await else {
        tracing::warn!(
            "no sentinel names the connected primary yet: an old primary, if one still \
             answers, is not fenced"
        );
        return false;
    };
    let mut settled = true;
    for server in servers.iter().filter(|s| **s != primary) {
        let name = format!("{}:{}", server.0, server.1);
        match tokio::time::timeout(timeout, demote(url, server, &primary, promoted)).await {
            Ok(Ok(true)) => tracing::warn!(
                server = %name,
                "an old primary still answered after the failover: made it a replica of the \
                 new one and closed its clients"
            ),
            Ok(Ok(false)) => {}
            Ok(Err(e))
                if !(e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()) =>
            {
                settled = false;
                tracing::error!(
                    server = %name,
                    error = %e,
                    "an old primary still answers after the failover and refused to become a \
                     replica (REPLICAOF and CLIENT KILL must be allowed): until Sentinel \
                     demotes it, clients still on it may read entries older than writes"
                );
            }
            // Down, or not reachable from here, where no client of this process reaches
            // it either.
            Ok(Err(_)) | Err(_) => {}
        }
    }
    settled
}

/// Demotes `server` if it answers as a primary in the history `promoted` left.
async fn demote(
    url: &str,
    server: &(String, u16),
    (new_host, new_port): &(String, u16),
    promoted: &Promotion,
) -> RedisResult<bool> {
    let (text, mut c) = info(url, server).await?;
    let old = info_field(&text, "role") == Some("master")
        && info_field(&text, "master_replid") == Some(promoted.previous_replid.as_str())
        && info_field(&text, "run_id") != Some(promoted.run_id.as_str());
    if !old {
        return Ok(false);
    }
    // As Sentinel reconfigures a server; `CLIENT KILL` spares the connection that sends it.
    redis::pipe()
        .atomic()
        .cmd("REPLICAOF")
        .arg(new_host)
        .arg(*new_port)
        .ignore()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .ignore()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .ignore()
        .query_async::<()>(&mut c)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_promoted_while_it_keeps_its_previous_replication_id() {
        let never = "run_id:aa\r\nmaster_replid:11\r\nmaster_replid2:0000000000\r\n";
        assert_eq!(Promotion::of(never), None);
        assert_eq!(Promotion::of("run_id:aa\r\n"), None);
        let promoted = "run_id:aa\r\nmaster_replid:22\r\nmaster_replid2:11\r\n";
        assert_eq!(
            Promotion::of(promoted),
            Some(Promotion {
                previous_replid: "11".into(),
                run_id: "aa".into()
            })
        );
    }
}
