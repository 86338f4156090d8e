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
--  11 P presence hash: ref ('<node>:<n>') -> the version it joined at, a space and its
--     JSON [identity, meta] (see roster.lua)
--  12 PN presence count hash: node id -> how many presences its clients show
-- ARGV: 1 the channel, 2 the publish command (SPUBLISH or PUBLISH); for a write, 3 the
-- caller's role ('g' or 'p'), 4 the permission bits it needs, 5 the version it expects
-- ('' for any), 6 the message body, 7 the write id ('' for none); its own from 8 on.
--
-- All or nothing: a script reads and checks everything before its first write, so an
-- error (a key of the wrong type, out of memory) leaves nothing half-written. User
-- JSON is never decoded here: cjson turns [] into {} and rounds integers above 2^53.
-- Only JSON numbers are parsed, for increment.
local M, S, Z, H, L, O, LK, K, W, V, P, PN = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
  KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
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

-- Keys a write may have just created get the expiry of the meta hash.
local function touch(...)
  local at = redis.call('PEXPIRETIME', M)
  if at > 0 then
    for _, k in ipairs({...}) do redis.call('PEXPIREAT', k, at) end
  end
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
    -- A W or V written over from outside answers nothing (pcall): the write goes ahead.
    local done = redis.pcall('HGET', W, WRITE)
    if type(done) ~= 'string' then done = redis.pcall('HGET', V, WRITE) end
    if type(done) == 'string' then return nil, {'done', done} end
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
local function keep(id, reply)
  -- W is only a cache of replies: one written over from outside is started again.
  if type(redis.pcall('HSET', W, id, reply)) == 'table' then
    redis.call('DEL', W)
    redis.call('HSET', W, id, reply)
    touch(W)
  end
end

local function remember(meta, version, id, reply)
  if not meta[8] or version % 256 == 0 then
    local now = now_ms()
    if not meta[8] or now - tonumber(meta[8]) > 10000 then
      if redis.call('EXISTS', W) == 1 then redis.call('RENAME', W, V) else redis.call('DEL', V) end
      redis.call('HSET', M, 'w', now)
      keep(id, reply)
      touch(W)  -- a new W: give it the live state's expiry
      return
    end
  end
  keep(id, reply)
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

local function push(key, first, last)
  -- unpack() has a stack limit, so long lists go in chunks.
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end

-- A property written for the first time goes last in the order (touch K afterwards).
local function place(prop)
  redis.call('ZADD', K, redis.call('HINCRBY', M, 'q', 1), prop)
end

local function is_list(value)
  return value and string.byte(value, 1) == 0
end
