-- KEYS: generation. ARGV: generation TTL (ms), floor. Moves the generation past its
-- current value, the clock and the floor.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local floor = tonumber(ARGV[2]) or 0
redis.call('SET', KEYS[1], string.format('%d', math.max(current + 1, now, floor)), 'PX', ARGV[1])
return 1
