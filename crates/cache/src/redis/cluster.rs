//! Connections to a Redis Cluster, made by deadpool with a cluster client that never
//! retries a request on its own.
//!
//! redis-rs's cluster client follows a failed node's slots to whichever node holds them
//! next (after `MOVED`, a refused connection, a failover) by retrying the request there.
//! A promoted replica may have lost writes the old primary acknowledged, so no request
//! may reach a node the cache has not checked (see `identity.rs`): with no retries, such
//! a failure comes back to the cache, which replaces the connection, and the new one is
//! checked against every master before it serves anything. A resharding or a failover
//! so costs a few failed lookups (reads go to the source of truth meanwhile), never an
//! unchecked answer.

use crate::Result;
use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{self, RedisError};

/// Makes cluster connections whose requests are never retried on another node.
pub(crate) struct ClusterManager {
    client: ClusterClient,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager").finish_non_exhaustive()
    }
}

impl ClusterManager {
    /// A manager of connections to the cluster whose nodes are `urls` (one URL a node).
    pub(crate) fn new(urls: Vec<String>) -> redis::RedisResult<Self> {
        Ok(Self {
            client: ClusterClientBuilder::new(urls).retries(0).build()?,
        })
    }
}

impl managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut ClusterConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await?;
        Ok(())
    }
}

/// The pool of cluster connections.
pub(crate) type ClusterPool = managed::Pool<ClusterManager>;
/// A connection checked out of it.
pub(crate) type ClusterObject = managed::Object<ClusterManager>;
