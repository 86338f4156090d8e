-- Put: ARGV 8 property, 9 its weight (name bytes as counted), 10 JSON bytes,
-- 11 'v' and 12 the JSON, or 'l' and 12... the items of a list.
local meta, err = begin()
if not meta then return err end
local prop, weight, bytes = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local size = redis.call('HGET', Z, prop)
local old = tonumber(size or '0')
local new = weight + bytes
local total = tonumber(meta[4]) - old + new
err = check_sizes(meta, bytes, total)
if err then return err end
local was_list = size and redis.call('SISMEMBER', L, LK) == 1
if ARGV[11] == 'l' and not was_list then redis.call('LLEN', LK) end  -- a wrong type fails here
local count = tonumber(meta[7])
if not size then
  count = count + 1
  place(prop)
elseif was_list then
  redis.call('DEL', LK)
  redis.call('SREM', L, LK)
end
if ARGV[11] == 'l' then
  if #ARGV > 11 then push(LK, 12, #ARGV) end
  redis.call('HSET', S, prop, '\0' .. LK)
  redis.call('SADD', L, LK)
  touch(LK, L)
else
  redis.call('HSET', S, prop, ARGV[12])
end
redis.call('HSET', Z, prop, new)
if not size then touch(S, Z, K) end  -- a property that exists has them all already
return finish(meta, total, count)
