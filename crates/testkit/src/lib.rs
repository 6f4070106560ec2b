//! Fixtures for tests that break Redis on purpose. They never touch a shared Redis: each
//! [`RedisServer`] is a private `redis-server` on a free loopback port, and a
//! [`FaultProxy`] sits between a client and any server to stall or cut its connections.
//! [`PgCluster`] is a private PostgreSQL server, or a streaming replica of one;
//! [`SentinelGroup`] a Redis primary with replicas and sentinels that fail it over.

mod cluster;
mod postgres;
mod proxy;
pub mod sentinel;
mod server;
mod tls;

pub use cluster::RedisCluster;
pub use postgres::PgCluster;
pub use proxy::FaultProxy;
pub use sentinel::SentinelGroup;
pub use server::RedisServer;
pub use tls::TestCa;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Polls `f` every 25 ms until it holds, for what a background mechanism (reconnection,
/// a breaker's backoff, pub/sub delivery) makes true; panics naming `what` after 10 s.
pub async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; bind soon).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address").port()
}
