-- What scripts that read, start, expire or end a whole live state share (after common.lua).

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
    and redis.pcall('ZCARD', K) == c and type(redis.pcall('SCARD', L)) ~= 'table'
end

local function all_keys()
  local keys = {M, S, Z, H, L, K, W, V, P, PN}
  local ok, lists = pcall(redis.call, 'SMEMBERS', L)
  if ok then
    for _, k in ipairs(lists) do keys[#keys + 1] = k end
  end
  return keys
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

local function expand(value)
  if string.byte(value, 1) == 0 then
    return redis.call('LRANGE', string.sub(value, 2), 0, -1)
  end
  return value
end

-- The snapshot: the whole state and presence (prop nil), one property (prop a name), or
-- the presence alone (prop false).
local function snapshot(prop)
  local meta = redis.call('HMGET', M, 'e', 'v', 'g', 'p', 'T', 'f')
  local props, values, presence = {}, {}, {}
  if prop == false then
    presence = redis.call('HGETALL', P)
  elseif prop then
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
    presence = redis.call('HGETALL', P)
  end
  return {'ok', meta[1], meta[2], meta[3], meta[4], meta[5], props, values, meta[6] or '',
    presence}
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
