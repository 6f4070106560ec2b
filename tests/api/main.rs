//! The HTTP contract of `shared/API.md`, end to end: the real server on a free port,
//! against a fresh PostgreSQL database per test.

// JSON answers are read with `value["field"]`, which yields `Null` for a missing field
// rather than panicking; the lint cannot tell `serde_json::Value` from a slice.
#![allow(clippy::indexing_slicing)]
// Multi-instance tests print the delays they measure.
#![allow(clippy::print_stdout)]

mod adoption;
mod adversarial;
mod businesses;
mod cache;
mod commit;
mod contacts_messages;
mod enrichment;
mod events;
mod failover;
mod health;
mod history;
mod idempotency;
mod instances;
mod list;
mod ops;
mod outage;
mod replicas;
mod seed;
mod sessions;
mod socketio;
mod stats_counters;
mod unstorable;
