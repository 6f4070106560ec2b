-- KEYS: value, root generation and own generation of each entry, three by three (all of
-- one hash slot). ARGV: generation TTL (ms), floor. Returns `state, bytes` of each entry,
-- flat.
local out = {}
entries(KEYS, nil, out)
return out
