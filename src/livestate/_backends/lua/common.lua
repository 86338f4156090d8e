-- Shared by every livestate script; the Python side prepends it to each one.
--
-- KEYS (all under one hash tag, so a script touches one slot):
--   1 meta hash: e epoch, v version, g/p ACL masks, t TTL in ms (-1 none), T TTL as
--     written by Python, mv/ms size limits, n bytes of the whole state, q the last place
--   2 state hash: property -> JSON text, or "\0" .. list key for a list property
--   3 sizes hash: property -> bytes it counts towards the state (name + JSON)
--   4 holders sorted set: node id -> lease end (ms)
--   5 set of list keys
--   6 start lock (SET NX PX while one node runs on_mount)
--   7 the list key of the property the operation names (or an unused name)
--   8 order sorted set: property -> its place (from the meta hash's counter q), so a
--     snapshot lists properties in the order they were added, as a dict does
-- ARGV[1] is the channel and ARGV[2] the publish command (SPUBLISH or PUBLISH).
--
-- User JSON is never decoded here: cjson turns [] into {} and rounds integers
-- above 2^53. Only JSON numbers are parsed, for increment.
local M, S, Z, H, L, O, LK, K = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
  KEYS[8]
local CHANNEL, PUBLISH = ARGV[1], ARGV[2]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function all_keys()
  local keys = {M, S, Z, H, L, K}
  for _, k in ipairs(redis.call('SMEMBERS', L)) do keys[#keys + 1] = k end
  return keys
end

-- Every key of a live state expires at the same moment: `ttl` after the last
-- lease ends (or now, when nobody holds it), or never when the TTL is none.
-- So a live state whose nodes all died still ends, with nothing left behind.
local function set_expiry(now)
  redis.call('ZREMRANGEBYSCORE', H, '-inf', now)
  local ttl = tonumber(redis.call('HGET', M, 't'))
  local keys = all_keys()
  if ttl < 0 then
    for _, k in ipairs(keys) do redis.call('PERSIST', k) end
    return
  end
  local last = redis.call('ZRANGE', H, -1, -1, 'WITHSCORES')
  local at = now + ttl
  if last[2] then at = tonumber(last[2]) + ttl end
  for _, k in ipairs(keys) do redis.call('PEXPIREAT', k, at) end
end

-- Keys a write may have just created get the expiry of the meta hash.
local function touch(...)
  local at = redis.call('PEXPIRETIME', M)
  if at > 0 then
    for _, k in ipairs({...}) do redis.call('PEXPIREAT', k, at) end
  end
end

local function expand(value)
  if string.byte(value, 1) == 0 then
    return redis.call('LRANGE', string.sub(value, 2), 0, -1)
  end
  return value
end

local function snapshot(prop)
  local meta = redis.call('HMGET', M, 'e', 'v', 'g', 'p', 'T')
  local props, values = {}, {}
  if prop then
    local value = redis.call('HGET', S, prop)
    if value then
      props[1] = prop
      values[1] = expand(value)
    end
  else
    -- In the order they were added: a hash keeps none once it outgrows its compact form.
    props = redis.call('ZRANGE', K, 0, -1)
    for i = 1, #props, 1000 do
      local chunk = redis.call('HMGET', S, unpack(props, i, math.min(i + 999, #props)))
      for j = 1, #chunk do values[#values + 1] = expand(chunk[j]) end
    end
  end
  return {'ok', meta[1], meta[2], meta[3], meta[4], meta[5], props, values}
end

local function push(key, first, last)
  -- unpack() has a stack limit, so long lists go in chunks.
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end

-- Write a whole state encoded from ARGV[i]: a count, then per property its name,
-- its size, and 'v' with its JSON, or 'l' with its list key, item count and items.
local function write_state(i)
  local count = tonumber(ARGV[i])
  i = i + 1
  redis.call('HSET', M, 'q', count)
  for place = 1, count do
    local prop, size, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    redis.call('ZADD', K, place, prop)
    redis.call('HSET', Z, prop, size)
    if kind == 'v' then
      redis.call('HSET', S, prop, ARGV[i + 3])
      i = i + 4
    else
      local key, items = ARGV[i + 3], tonumber(ARGV[i + 4])
      redis.call('HSET', S, prop, '\0' .. key)
      redis.call('SADD', L, key)
      if items > 0 then push(key, i + 5, i + 4 + items) end
      i = i + 5 + items
    end
  end
end

local function drop_lists()
  local keys = redis.call('SMEMBERS', L)
  for _, k in ipairs(keys) do redis.call('DEL', k) end
  redis.call('DEL', L)
end

-- The checks every write makes before its first write command. ARGV[3] is the
-- caller's role ('g' or 'p'), ARGV[4] the permission bits it needs, ARGV[5] the
-- version it expects ('' for any). Returns the meta fields, or nil and a reply.
local function begin()
  local meta = redis.call('HMGET', M, 'v', ARGV[3], 'e', 'n', 'mv', 'ms')
  if not meta[1] then return nil, {'missing'} end
  local need = tonumber(ARGV[4])
  if bit.band(tonumber(meta[2]), need) ~= need then return nil, {'denied'} end
  if ARGV[5] ~= '' and ARGV[5] ~= meta[1] then return nil, {'conflict'} end
  return meta
end

-- Size checks, as MemoryBackend makes them: the property's value, then the whole state.
local function check_sizes(meta, value_bytes, total)
  if value_bytes > tonumber(meta[5]) then return {'value_size', value_bytes, meta[5]} end
  if total > tonumber(meta[6]) then return {'state_size', total, meta[6]} end
  return nil
end

-- Raise the version and publish (epoch, version, ARGV[6]); returns the version.
local function finish(meta, total)
  local version = tonumber(meta[1]) + 1
  redis.call('HSET', M, 'v', version, 'n', total)
  redis.call(PUBLISH, CHANNEL, meta[3] .. '\n' .. version .. '\n' .. ARGV[6])
  return version
end

-- A property written for the first time goes last in the order (touch K afterwards).
local function place(prop)
  redis.call('ZADD', K, redis.call('HINCRBY', M, 'q', 1), prop)
end

local function is_list(value)
  return value and string.byte(value, 1) == 0
end

-- The decimal digit string `digits` (exponent `exponent`) plus `step` (1 or -1) in its
-- last place, renormalised to the same length; nil when it would lose a digit.
local function nudge(digits, step, exponent)
  local out, carry = {}, step
  for i = #digits, 1, -1 do
    local d = string.byte(digits, i) - 48 + carry
    carry = 0
    if d > 9 then d, carry = 0, 1 elseif d < 0 then d, carry = 9, -1 end
    out[i] = string.char(48 + d)
  end
  local result = table.concat(out)
  if carry ~= 0 or string.sub(result, 1, 1) == '0' then return nil end
  return result, exponent
end

-- A finite double as Python's repr writes it (shortest digits that read back the
-- same, fixed notation for exponents -4..15, else 1e+16 style), or nil if not finite.
local function python_float(x)
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  if x == 0 then
    if 1 / x < 0 then return '-0.0' end
    return '0.0'
  end
  local sign, digits, exponent
  for precision = 0, 16 do
    local s = string.format('%.' .. precision .. 'e', x)
    local first, rest
    sign, first, rest, exponent = string.match(s, '^(-?)(%d)%.?(%d*)e([-+]%d+)$')
    exponent = tonumber(exponent)
    digits = first .. rest
    if tonumber(s) == x then break end
    -- On an exact tie the correctly rounded digits may miss while a neighbour reads
    -- back (Python's repr takes it): try the last digit one up and one down.
    local found = false
    for _, step in ipairs({1, -1}) do
      local d, e = nudge(digits, step, exponent)
      if d and tonumber(sign .. string.sub(d, 1, 1) .. '.' .. string.sub(d, 2) .. 'e' .. e) == x then
        digits, exponent, found = d, e, true
        break
      end
    end
    if found then break end
  end
  local first, rest = string.sub(digits, 1, 1), string.sub(digits, 2)
  if exponent < -4 or exponent >= 16 then
    local mantissa = first
    if #rest > 0 then mantissa = first .. '.' .. rest end
    local mark = '+'
    if exponent < 0 then mark = '-' end
    return sign .. mantissa .. 'e' .. mark .. string.format('%02d', math.abs(exponent))
  end
  if exponent < 0 then
    return sign .. '0.' .. string.rep('0', -exponent - 1) .. digits
  end
  if #digits <= exponent + 1 then
    return sign .. digits .. string.rep('0', exponent + 1 - #digits) .. '.0'
  end
  return sign .. string.sub(digits, 1, exponent + 1) .. '.' .. string.sub(digits, exponent + 2)
end
