-- KEYS: the index's value, root generation, own generation. ARGV: generation TTL (ms),
-- floor, the prefix every member key must have (the index's own hash tag), the tag of the
-- caller's copy of the index (or ''), then the tag of the caller's copy of each member
-- (or ''). Answers the index's `state, bytes` as `entry` does (3, and no value, when the
-- caller's copy is current) and, on a hit, `state, bytes` of every member the index
-- names (its members section: `@index N\n`, then three key names a line each per
-- member, after the 8-digit checksum); the members' known tags count only when the
-- index's does, since they are given by position. A section that does not parse, or
-- names a key outside the prefix, is answered as not in this cache's format (2).
local state, v = entry(KEYS[1], KEYS[2], KEYS[3])
if state ~= 1 then return {state, v} end
local pos = string.find(v, '\n', 1, true) + 9
if string.sub(v, pos, pos + 6) ~= '@index ' then return {2, ''} end
local e = string.find(v, '\n', pos, true)
local n = e and tonumber(string.sub(v, pos + 7, e - 1))
if not n then return {2, ''} end
local current = ARGV[4] ~= '' and string.sub(v, 1, #ARGV[4]) == ARGV[4]
local out = {1, v}
if current then out = {3, ''} end
pos = e + 1
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
if current then
  for i = 1, n do knowns[i] = ARGV[4 + i] end
end
entries(names, knowns, out)
return out
