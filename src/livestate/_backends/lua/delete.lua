-- Delete: ARGV 8 property.
local meta, err = begin()
if not meta then return err end
local prop = ARGV[8]
local current = redis.call('HGET', S, prop)
if not current then return {'invalid'} end
local old = tonumber(redis.call('HGET', Z, prop) or '0')
if is_list(current) then
  redis.call('DEL', LK)
  redis.call('SREM', L, LK)
end
redis.call('HDEL', S, prop)
redis.call('HDEL', Z, prop)
redis.call('ZREM', K, prop)
return finish(meta, tonumber(meta[4]) - old, tonumber(meta[7]) - 1)
