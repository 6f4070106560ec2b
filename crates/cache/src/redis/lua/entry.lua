-- The lookups of entries inside a script. `gen(key)` answers a scope's generation,
-- making it from the Redis clock (microseconds) when it is missing, and moving it past
-- the floor (`ARGV[2]`, see `identity.rs`) when it is below: a generation of a history
-- the cache no longer trusts is invalidated before it is used. A script reads each
-- generation once. `entry(value key, root generation key, own generation key, known
-- tag)` answers `state, bytes`: 3 and no bytes when the caller's copy (of the known
-- tag) is current and the entry has not expired, 1 and the stored bytes on a hit, 0
-- and the tag to store under on a miss, 2 and the tag for an entry that is not in this
-- cache's format (written by something else: the caller removes it). `entries(names,
-- knowns, out)` looks up many entries (`names` three key names per entry, `knowns` a
-- known tag or '' per entry, or nil) with one MGET of their generations, one EXISTS of
-- the copies it confirms and one MGET of the values it sends, and appends `state,
-- bytes` of each to `out`, in order, as `entry` would answer them.
local floor = tonumber(ARGV[2]) or 0
local gens = {}
local function fresh(key, old)
  local t = redis.call('TIME')
  local g = string.format('%d', math.max(t[1] * 1000000 + t[2], floor, (tonumber(old) or 0) + 1))
  redis.call('SET', key, g, 'PX', ARGV[1])
  return g
end
local function gen(key)
  local g = gens[key]
  if g then return g end
  g = redis.call('GET', key)
  if not g or (tonumber(g) or 0) < floor then g = fresh(key, g) end
  gens[key] = g
  return g
end
local function classify(v, tag)
  if not v then return 0, tag end
  if string.sub(v, 1, #tag) == tag then return 1, v end
  if string.match(v, '^%d+%.%d+\n') then return 0, tag end
  return 2, tag
end
local function entry(k, root, own, known)
  local tag = gen(root) .. '.' .. gen(own) .. '\n'
  if known and known ~= '' and known == tag and redis.call('EXISTS', k) == 1 then
    return 3, ''
  end
  return classify(redis.call('GET', k), tag)
end
local function entries(names, knowns, out)
  local n = #names / 3
  if n == 0 then return end
  local want, asked = {}, {}
  for i = 1, #names do
    if i % 3 ~= 1 then
      local k = names[i]
      if not gens[k] and not asked[k] then
        asked[k] = true
        want[#want + 1] = k
      end
    end
  end
  if #want > 0 then
    local got = redis.call('MGET', unpack(want))
    for i, k in ipairs(want) do
      local g = got[i]
      if not g or (tonumber(g) or 0) < floor then g = fresh(k, g) end
      gens[k] = g
    end
  end
  local tags, confirm, send = {}, {}, {}
  for i = 1, n do
    local tag = gens[names[3 * i - 1]] .. '.' .. gens[names[3 * i]] .. '\n'
    tags[i] = tag
    local known = knowns and knowns[i]
    if known and known ~= '' and known == tag then
      confirm[#confirm + 1] = i
    else
      send[#send + 1] = i
    end
  end
  local states, bytes = {}, {}
  if #confirm > 0 then
    local keys = {}
    for j, i in ipairs(confirm) do keys[j] = names[3 * i - 2] end
    if redis.call('EXISTS', unpack(keys)) == #keys then
      for _, i in ipairs(confirm) do states[i] = 3; bytes[i] = '' end
    else
      for _, i in ipairs(confirm) do
        if redis.call('EXISTS', names[3 * i - 2]) == 1 then
          states[i] = 3; bytes[i] = ''
        else
          send[#send + 1] = i
        end
      end
    end
  end
  if #send > 0 then
    local keys = {}
    for j, i in ipairs(send) do keys[j] = names[3 * i - 2] end
    local values = redis.call('MGET', unpack(keys))
    for j, i in ipairs(send) do
      states[i], bytes[i] = classify(values[j], tags[i])
    end
  end
  for i = 1, n do
    out[#out + 1] = states[i]
    out[#out + 1] = bytes[i]
  end
end
