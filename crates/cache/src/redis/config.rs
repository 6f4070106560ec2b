//! Settings of a [`RedisCache`] and the clients its URL names.

use std::time::Duration;

use deadpool_redis::redis::{self};

/// Settings of a [`RedisCache`].
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://...` for TLS, or
    /// `redis+cluster://host:port,host:port`.
    pub url: String,
    /// PEM certificate(s) of the authority that signed the server's TLS certificate,
    /// for `rediss://` servers with a private CA (the system's roots otherwise).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Prefix of every key and channel (`cache:v1` by default): each service sharing a
    /// Redis names its own. Its version segment separates incompatible formats.
    pub namespace: String,
    /// Longest a lookup or store may take before it counts as failed (the request then
    /// reads the database).
    pub timeout: Duration,
    /// Longest an invalidation may take. Longer than `timeout`: a write waits for its
    /// invalidation rather than leave it to the slower paths (its change announcement,
    /// or the retry before this process serves the scope again), unless the breaker
    /// already knows Redis is away.
    pub invalidate_timeout: Duration,
    /// Longest making a new connection may take.
    pub connect_timeout: Duration,
    /// Multiplexed connections shared by calls from multi-threaded runtimes; each thread
    /// of a current-thread runtime (an HTTP worker's) calls over one of its own.
    pub connections: usize,
    /// Values larger than this are not stored.
    pub max_value_bytes: usize,
    /// Values longer than this are stored LZ4-compressed when that saves an eighth or
    /// more (decompressed once per read from Redis; a near tier keeps them
    /// decompressed); `None` stores every value as it is.
    pub compress_above: Option<usize>,
    /// How long a scope's generation lives; at least the longest entry TTL, so entries
    /// are not orphaned early.
    pub generation_ttl: Duration,
    /// A Sentinel group that names the primary: when set, connections go to the primary
    /// it names now (asked again for every new connection), with `url`'s password,
    /// database and TLS mode; `url`'s host and port are not used.
    pub sentinel: Option<SentinelConfig>,
}

/// A Redis Sentinel group (`SENTINEL get-master-addr-by-name`).
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// `host:port` of each sentinel.
    pub nodes: Vec<String>,
    /// The name the sentinels monitor the primary by (`mymaster` by default).
    pub master: String,
}

impl SentinelConfig {
    /// The sentinels at `nodes` (comma-separated `host:port`) watching `master`.
    pub fn new(nodes: &str, master: &str) -> Self {
        Self {
            nodes: nodes
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            master: master.to_owned(),
        }
    }

    /// Each sentinel's URL (`redis://host:port` unless given whole).
    pub(super) fn urls(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.iter().map(|n| {
            if n.contains("://") {
                n.clone()
            } else {
                format!("redis://{n}")
            }
        })
    }

    /// The sentinels' URLs, and how to reach the primary they name: with the password,
    /// database and TLS mode of `url`.
    fn parts(
        &self,
        url: &str,
    ) -> redis::RedisResult<(
        Vec<String>,
        deadpool_redis::sentinel::SentinelNodeConnectionInfo,
    )> {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info()?;
        let sentinels = self.urls().collect();
        let node = deadpool_redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: url
                .starts_with("rediss://")
                .then_some(deadpool_redis::sentinel::TlsMode::Secure),
            redis_connection_info: Some(info.redis_settings().clone().into()),
        };
        Ok((sentinels, node))
    }

    /// The deadpool-redis configuration of a pool of connections to the primary.
    pub(super) fn pool_config(
        &self,
        url: &str,
    ) -> redis::RedisResult<deadpool_redis::sentinel::Config> {
        let (sentinels, node) = self.parts(url)?;
        Ok(deadpool_redis::sentinel::Config::from_urls(
            sentinels,
            self.master.clone(),
            deadpool_redis::sentinel::SentinelServerType::Master,
        )
        .with_node_connection_info(Some(node)))
    }

    /// A client that answers a client of the primary the sentinels name now.
    pub(super) fn client(&self, url: &str) -> redis::RedisResult<redis::sentinel::SentinelClient> {
        let (sentinels, node) = self.parts(url)?;
        redis::sentinel::SentinelClient::build(
            sentinels.iter().map(String::as_str).collect(),
            self.master.clone(),
            Some(node.into()),
            redis::sentinel::SentinelServerType::Master,
        )
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            tls_ca_pem: None,
            namespace: "cache:v1".into(),
            timeout: Duration::from_millis(50),
            invalidate_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(200),
            connections: 2,
            max_value_bytes: 1024 * 1024,
            compress_above: Some(512),
            generation_ttl: Duration::from_secs(3600),
            sentinel: None,
        }
    }
}

/// The nodes of a cluster URL: `redis+cluster://[user:pass@]h1:p1,h2:p2` (or
/// `rediss+cluster://` for TLS), each as a plain URL with the same credentials.
/// A client of `url`, trusting `ca_pem` for TLS when given.
pub(super) fn client(url: &str, ca_pem: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    match ca_pem {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        ),
        None => redis::Client::open(url),
    }
}

pub(crate) fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.strip_suffix("+cluster")?;
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    Some(
        hosts
            .split(',')
            .filter(|h| !h.trim().is_empty())
            .map(|h| format!("{scheme}://{userinfo}{}", h.trim()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisCache;

    #[test]
    fn cluster_urls_name_every_node_with_the_same_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001/"),
            Some(vec![
                "redis://:pw@10.0.0.1:7000".to_owned(),
                "redis://:pw@10.0.0.2:7001".to_owned()
            ])
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://h1:1,h2:2"),
            Some(vec!["rediss://h1:1".to_owned(), "rediss://h2:2".to_owned()])
        );
        assert_eq!(cluster_nodes("redis://h:6379"), None);
        assert!(
            RedisCache::new(RedisConfig {
                url: "redis+cluster://".into(),
                ..RedisConfig::default()
            })
            .is_err()
        );
    }
}
