//! PostgreSQL storage of the lead data: the [`PgStore`] repository (diesel + diesel-async
//! on a bounded deadpool pool), schema migrations, and the demo-data seeder.
//!
//! This crate knows nothing of HTTP or caching. It answers every read as
//! [`letip_domain::CacheStatus::Bypass`]: it is the source of truth.

pub mod changes;
pub mod db;
pub mod replicas;
mod repo;
mod rows;
mod schema;
pub mod schema_setup;
pub mod seed;

pub use db::{
    PgPool, PoolOptions, SetupError, drop_database, ensure_database, migrate, pool, recount_stats,
};
pub use replicas::{ReplicaOptions, Replicas};
pub use repo::PgStore;
