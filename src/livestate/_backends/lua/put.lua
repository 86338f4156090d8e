-- Put: ARGV 7 property, 8 its weight (name bytes as counted), 9 JSON bytes,
-- 10 'v' and 11 the JSON, or 'l' and 11... the items of a list.
local meta, err = begin()
if not meta then return err end
local prop, weight, bytes = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local size = redis.call('HGET', Z, prop)
local old = tonumber(size or '0')
local new = weight + bytes
err = check_sizes(meta, bytes, tonumber(meta[4]) - old + new)
if err then return err end
if not size then
  place(prop)
elseif redis.call('SISMEMBER', L, LK) == 1 then
  redis.call('DEL', LK)
  redis.call('SREM', L, LK)
end
if ARGV[10] == 'l' then
  if #ARGV > 10 then push(LK, 11, #ARGV) end
  redis.call('HSET', S, prop, '\0' .. LK)
  redis.call('SADD', L, LK)
  touch(LK, L)
else
  redis.call('HSET', S, prop, ARGV[11])
end
redis.call('HSET', Z, prop, new)
if not size then touch(S, Z, K) end  -- a property that exists has them all already
return {'ok', finish(meta, tonumber(meta[4]) - old + new), meta[3]}
