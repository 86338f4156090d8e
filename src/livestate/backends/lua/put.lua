-- Put: ARGV 7 property, 8 its weight (name bytes as counted), 9 JSON bytes,
-- 10 'v' and 11 the JSON, or 'l' and 11... the items of a list.
local meta, err = begin()
if not meta then return err end
local prop, weight, bytes = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local old = tonumber(redis.call('HGET', Z, prop) or '0')
local new = weight + bytes
err = check_sizes(meta, bytes, tonumber(meta[4]) - old + new)
if err then return err end
if is_list(redis.call('HGET', S, prop)) then
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
touch(S, Z)
return {'ok', finish(meta, tonumber(meta[4]) - old + new), meta[3]}
