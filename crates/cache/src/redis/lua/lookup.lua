-- KEYS: value, the scope's root generation, its own generation (the same key for a scope
-- without a parent). ARGV: generation TTL (ms), floor, the tag of a copy the caller holds
-- (or ''). Answers `entry`'s `{state, bytes}`.
return {entry(KEYS[1], KEYS[2], KEYS[3], ARGV[3])}
