//! The Lua scripts, one per operation (each one round trip, atomic, on one hash slot),
//! and the codes they answer. The scripts are the `.lua` files in `lua/`; each opens
//! with the comment that documents it, repeated here.

use std::sync::LazyLock;

use deadpool_redis::redis::aio::ConnectionLike;
use deadpool_redis::redis::{
    self, Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs,
};

/// Runs `script` on `keys`, with the arguments `args` adds, as one `EVALSHA` built in
/// place; a server that does not know the script yet is sent it first. (A
/// `ScriptInvocation` copies each key and argument into vectors of its own, then into
/// the same command: on a Redis hit, those copies were the most frequent allocations.)
pub(super) async fn eval<T: FromRedisValue>(
    conn: &mut impl ConnectionLike,
    script: &Script,
    keys: &[impl ToRedisArgs],
    args: impl FnOnce(&mut Cmd),
) -> RedisResult<T> {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    args(&mut cmd);
    match cmd.query_async(conn).await {
        Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        answer => answer,
    }
}

/// The lookups of entries inside a script. `gen(key)` answers a scope's generation,
/// making it from the Redis clock (microseconds) when it is missing, and moving it past
/// the floor (`ARGV[2]`, see `identity.rs`) when it is below: a generation of a history
/// the cache no longer trusts is invalidated before it is used. A script reads each
/// generation once. `entry(value key, root generation key, own generation key, known
/// tag)` answers `state, bytes`: 3 and no bytes when the caller's copy (of the known
/// tag) is current and the entry has not expired, 1 and the stored bytes on a hit, 0
/// and the tag to store under on a miss, 2 and the tag for an entry that is not in this
/// cache's format (written by something else: the caller removes it). `entries(names,
/// knowns, out)` looks up many entries (`names` three key names per entry, `knowns` a
/// known tag or '' per entry, or nil) with one MGET of their generations, one EXISTS of
/// the copies it confirms and one MGET of the values it sends, and appends `state,
/// bytes` of each to `out`, in order, as `entry` would answer them.
pub(super) const ENTRY_FNS: &str = include_str!("lua/entry.lua");

/// KEYS: value, the scope's root generation, its own generation (the same key for a scope
/// without a parent). ARGV: generation TTL (ms), floor, the tag of a copy the caller holds
/// (or ''). Answers `entry`'s `{state, bytes}`.
pub(super) const LOOKUP: &str = include_str!("lua/lookup.lua");

/// KEYS: value, root generation and own generation of each entry, three by three (all of
/// one hash slot). ARGV: generation TTL (ms), floor. Returns `state, bytes` of each entry,
/// flat.
pub(super) const LOOKUP_MANY: &str = include_str!("lua/lookup_many.lua");

/// KEYS: the index's value, root generation, own generation. ARGV: generation TTL (ms),
/// floor, the prefix every member key must have (the index's own hash tag), the tag of the
/// caller's copy of the index (or ''), then the tag of the caller's copy of each member
/// (or ''). Answers the index's `state, bytes` as `entry` does (3, and no value, when the
/// caller's copy is current) and, on a hit, `state, bytes` of every member the index
/// names (its members section: `@index N\n`, then three key names a line each per
/// member, after the 8-digit checksum); the members' known tags count only when the
/// index's does, since they are given by position. A section that does not parse, or
/// names a key outside the prefix, is answered as not in this cache's format (2).
pub(super) const LOOKUP_INDEX: &str = include_str!("lua/lookup_index.lua");

/// KEYS: value, root generation, own generation. ARGV: tag, value, TTL (ms), floor. Stores
/// only while the tag is current, and never under a generation below the floor.
pub(super) const STORE: &str = include_str!("lua/store.lua");

/// KEYS: generation. ARGV: generation TTL (ms), floor. Moves the generation past its
/// current value, the clock and the floor.
pub(super) const INVALIDATE: &str = include_str!("lua/invalidate.lua");

/// The scripts, each made (its SHA-1 taken) once per process.
pub(super) static LOOKUP_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_entry_fns(LOOKUP));
pub(super) static LOOKUP_MANY_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| with_entry_fns(LOOKUP_MANY));
pub(super) static LOOKUP_INDEX_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| with_entry_fns(LOOKUP_INDEX));
pub(super) static STORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STORE));
pub(super) static INVALIDATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(INVALIDATE));

fn with_entry_fns(body: &str) -> Script {
    Script::new(&format!("{ENTRY_FNS}{body}"))
}

/// What a lookup script answers of one entry (the first of its `state, bytes` pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Not stored under the current generations; the bytes are the tag to store under.
    Miss,
    /// Stored under the current generations; the bytes are the stored value.
    Hit,
    /// Stored by something else, not in this cache's format; the bytes are the current
    /// tag. The caller removes it.
    Foreign,
    /// The caller's copy (of the tag it gave) is current and the entry exists; no bytes.
    Current,
}

impl State {
    /// The state a script answered as `code`; a code no script answers counts as
    /// [`State::Foreign`], whose entry is removed and never served.
    pub(super) fn of(code: i64) -> Self {
        match code {
            0 => Self::Miss,
            1 => Self::Hit,
            3 => Self::Current,
            _ => Self::Foreign,
        }
    }
}
