-- Shared by every livestate script; the Python side prepends it to each one.
--
-- KEYS (all under one hash tag, so a script touches one slot):
--   1 M meta hash: e epoch, v version, g/p ACL masks, t TTL in ms (-1 none), T TTL as
--     written by Python, mv/ms size limits, n bytes of the whole state, c number of
--     properties, q the last place, w when the write-id hashes last turned over (ms),
--     L the data layout (LAYOUT), f what the spec that started it declares
--   2 S state hash: property -> JSON text, or "\0" .. list key for a list property
--   3 Z sizes hash: property -> bytes it counts towards the state (name + JSON)
--   4 H holders sorted set: node id -> lease end (ms)
--   5 L set of list keys
--   6 O start lock (SET NX PX while one node runs on_mount)
--   7 LK the list key of the property the operation names (or an unused name)
--   8 K order sorted set: property -> its place (from the meta hash's counter q), so a
--     snapshot lists properties in the order they were added, as a dict does
--   9 W write id -> the reply it got, for the writes of at least the last 10 seconds, so
--     a call retried after its reply was lost is answered, not applied again
--  10 V the previous W
-- ARGV: 1 the channel, 2 the publish command (SPUBLISH or PUBLISH); for a write, 3 the
-- caller's role ('g' or 'p'), 4 the permission bits it needs, 5 the version it expects
-- ('' for any), 6 the message body, 7 the write id ('' for none); its own from 8 on.
--
-- All or nothing: a script reads and checks everything before its first write, so an
-- error (a key of the wrong type, out of memory) leaves nothing half-written. User
-- JSON is never decoded here: cjson turns [] into {} and rounds integers above 2^53.
-- Only JSON numbers are parsed, for increment.
local M, S, Z, H, L, O, LK, K, W, V = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local CHANNEL, PUBLISH = ARGV[1], ARGV[2]

-- The data layout and message format of this release (the meta hash's L, and
-- `ls:layout` for the whole server); a live state of another layout is not touched.
local LAYOUT = '2'

-- Integers as digits: tostring() would write a version as 1.79e+15.
local function int(n)
  return string.format('%d', n)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function now_ms()
  return math.floor(now_us() / 1000)
end

local function all_keys()
  local keys = {M, S, Z, H, L, K, W, V}
  local ok, lists = pcall(redis.call, 'SMEMBERS', L)
  if ok then
    for _, k in ipairs(lists) do keys[#keys + 1] = k end
  end
  return keys
end

-- Whether every key of the live state is there, of its type, and agrees on the number of
-- properties (`count`, from the meta hash): Redis may evict or expire one key alone, and
-- anyone may write over one. A live state that is not whole is started anew. (The other
-- keys are read before any write, so one of the wrong type fails a script harmlessly.)
local function intact(count)
  if not count then return false end
  local c = tonumber(count)
  return redis.pcall('HLEN', S) == c and redis.pcall('HLEN', Z) == c
    and redis.pcall('ZCARD', K) == c
end

-- Remove every key of a live state but its holders and start lock.
local function clear()
  for _, k in ipairs(all_keys()) do
    if k ~= H then redis.call('DEL', k) end
  end
end

-- When every key of a live state should expire: `ttl` ms after the last lease ends (or
-- after now, when nobody holds it), or nil for never. Only reads.
local function expiry(now, ttl)
  if ttl < 0 then return nil end
  local last = redis.call('ZRANGE', H, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > now then return tonumber(last[2]) + ttl end
  return now + ttl
end

-- Every key of a live state expires at the same moment, so a live state whose nodes all
-- died still ends, with nothing left behind.
local function set_expiry(now, at)
  redis.call('ZREMRANGEBYSCORE', H, '-inf', now)
  for _, k in ipairs(all_keys()) do
    if at then redis.call('PEXPIREAT', k, at) else redis.call('PERSIST', k) end
  end
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
  local meta = redis.call('HMGET', M, 'e', 'v', 'g', 'p', 'T', 'f')
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
  return {'ok', meta[1], meta[2], meta[3], meta[4], meta[5], props, values, meta[6] or ''}
end

local function push(key, first, last)
  -- unpack() has a stack limit, so long lists go in chunks.
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end

-- Write a whole state encoded from ARGV[i]: a count, then per property its name,
-- its size, and 'v' with its JSON, or 'l' with its list key, item count and items.
-- Returns the number of properties.
local function write_state(i)
  local count = tonumber(ARGV[i])
  i = i + 1
  redis.call('HSET', M, 'q', count, 'c', count)
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
  return count
end

local function drop_lists()
  local keys = redis.call('SMEMBERS', L)
  for _, k in ipairs(keys) do redis.call('DEL', k) end
  redis.call('DEL', L)
end

-- The checks every write makes before its first write command. Returns the meta fields
-- (v, role mask, e, n, mv, ms, c, w, L), or nil and the reply: 'layout' (another
-- release's live state), 'missing' (also when the live state is not whole), 'done'
-- with the reply a retried write already got, 'denied' or 'conflict'. ARGV[7] is the write id; a retry has '+' before it, and only
-- a retry can have been applied already, so only a retry looks.
local WRITE = ARGV[7] or ''
local function begin()
  local meta = redis.call('HMGET', M, 'v', ARGV[3], 'e', 'n', 'mv', 'ms', 'c', 'w', 'L')
  if meta[9] and meta[9] ~= LAYOUT then return nil, {'layout', meta[9]} end
  if not meta[1] or not intact(meta[7]) then return nil, {'missing'} end
  if string.byte(WRITE, 1) == 43 then
    WRITE = string.sub(WRITE, 2)
    local done = redis.call('HGET', W, WRITE) or redis.call('HGET', V, WRITE)
    if done then return nil, {'done', done} end
  end
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

-- Keep the reply of write `id` for a while: W turns into V every 256 versions, once
-- it is over 10 s old, so an id lives 10 s at least (any retry comes sooner), and the
-- clock is read on one write in 256 only.
local function remember(meta, version, id, reply)
  if not meta[8] or version % 256 == 0 then
    local now = now_ms()
    if not meta[8] or now - tonumber(meta[8]) > 10000 then
      if redis.call('EXISTS', W) == 1 then redis.call('RENAME', W, V) else redis.call('DEL', V) end
      redis.call('HSET', M, 'w', now)
      redis.call('HSET', W, id, reply)
      touch(W)  -- a new W: give it the live state's expiry
      return
    end
  end
  redis.call('HSET', W, id, reply)
end

-- Raise the version, remember the write's reply, publish (epoch, version, ARGV[6]);
-- returns the reply. `count` is the new number of properties, `result` increment's sum.
local function finish(meta, total, count, result)
  local number = tonumber(meta[1]) + 1
  local version = int(number)
  if count == tonumber(meta[7]) then
    redis.call('HSET', M, 'v', version, 'n', total)
  else
    redis.call('HSET', M, 'v', version, 'n', total, 'c', count)
  end
  if WRITE ~= '' then
    remember(meta, number, WRITE, version .. '\n' .. meta[3] .. '\n' .. (result or ''))
  end
  redis.call(PUBLISH, CHANNEL, meta[3] .. '\n' .. version .. '\n' .. ARGV[6])
  return {'ok', version, meta[3], result}
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
