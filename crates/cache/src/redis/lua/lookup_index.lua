-- KEYS: the index's value, root generation, own generation. ARGV: generation TTL (ms),
-- floor, the prefix every member key must have (the index's own hash tag), the tag of the
-- caller's copy of the index (or ''), the SHA-1 (hex) of that copy's members section, then
-- the tag of the caller's copy of each member (or ''). Answers the index's `state, bytes`
-- as `entry` does (3, and no value, when the caller's copy is current) and, on a hit,
-- `state, bytes` of every member the index names (its members section: `@index N\n`,
-- then three key names a line each per member, after the 8-digit checksum). Two loads
-- under one ticket may store different indexes under one tag, one after the other: the
-- caller's copy is current only if the stored index also names the same members, in the
-- same order (its section hashes the same), since the members' answers and known tags
-- go by position. A section that does not parse, or names a key outside the prefix, is
-- answered as not in this cache's format (2).
local state, v = entry(KEYS[1], KEYS[2], KEYS[3])
if state ~= 1 then return {state, v} end
local start = string.find(v, '\n', 1, true) + 9
if string.sub(v, start, start + 6) ~= '@index ' then return {2, ''} end
local e = string.find(v, '\n', start, true)
local n = e and tonumber(string.sub(v, start + 7, e - 1))
if not n then return {2, ''} end
local pos = e + 1
local prefix = ARGV[3]
local names, knowns = {}, {}
for i = 1, 3 * n do
  local stop = string.find(v, '\n', pos, true)
  if not stop then return {2, ''} end
  local name = string.sub(v, pos, stop - 1)
  if string.sub(name, 1, #prefix) ~= prefix then return {2, ''} end
  names[i] = name
  pos = stop + 1
end
local current = ARGV[4] ~= '' and string.sub(v, 1, #ARGV[4]) == ARGV[4]
  and redis.sha1hex(string.sub(v, start, pos - 1)) == ARGV[5]
local out = {1, v}
if current then
  out = {3, ''}
  for i = 1, n do knowns[i] = ARGV[5 + i] end
end
entries(names, knowns, out)
return out
