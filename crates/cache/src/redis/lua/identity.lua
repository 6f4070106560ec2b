-- KEYS: the identity record, the lease table. ARGV: the identity of the node(s). Answers
-- `{1, floor}` when it began a new history (a new floor, the lease table forgotten), or
-- `{0, floor}` when the record already names this identity.
local rec = redis.call('HMGET', KEYS[1], 'id', 'floor')
local known = tonumber(rec[2])
if rec[1] == ARGV[1] and known then return {0, rec[2]} end
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local floor = string.format('%d', math.max(now, (known or 0) + 1))
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'floor', floor)
redis.call('DEL', KEYS[2])
return {1, floor}
