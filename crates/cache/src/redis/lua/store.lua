-- KEYS: value, root generation, own generation. ARGV: tag, value, TTL (ms), floor. Stores
-- only while the tag is current, and never under a generation below the floor.
local floor = tonumber(ARGV[4]) or 0
local root = redis.call('GET', KEYS[2])
local own = redis.call('GET', KEYS[3])
if root and own and (tonumber(root) or 0) >= floor and (tonumber(own) or 0) >= floor
    and (root .. '.' .. own .. '\n') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
