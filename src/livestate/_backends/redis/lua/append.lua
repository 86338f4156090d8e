-- Append: ARGV 8 property, 9 its weight, 10 the item's JSON bytes, 11 max_len ('' for
-- none), 12 the item's JSON. Only the item crosses the wire, and the size stays exact:
-- `[a,b]` plus c is `[a,b,c]`, one comma more, minus each dropped item and its comma.
local meta, err = begin()
if not meta then return err end
local prop, weight, bytes = ARGV[8], ARGV[9] + 0, ARGV[10] + 0
local current, size = redis.pcall('HGET', S, prop), redis.pcall('HGET', Z, prop)
if type(size) == 'table' or type(current) == 'table' then return {'missing'} end
local old = tonumber(size or '0')
local new, drop = weight + 2 + bytes, 0
local count = redis.call('LLEN', LK)  -- a wrong type fails here, before any write
if current then
  if string.byte(current, 1) ~= 0 then return {'invalid', current} end
  if ARGV[11] ~= '' then drop = math.max(0, count + 1 - tonumber(ARGV[11])) end
  local gone = 0
  if drop > 0 then
    for _, item in ipairs(redis.call('LRANGE', LK, 0, drop - 1)) do gone = gone + #item + 1 end
  end
  local comma = 0
  if count > 0 then comma = 1 end
  new = old + bytes + comma - gone
end
if not current and not lists_whole() then return {'missing'} end
local total = meta[4] - old + new
if new - weight > (meta[5] + 0) then return {'value_size', new - weight, meta[5]} end
if total > (meta[6] + 0) then return {'state_size', total, meta[6]} end
local props = nil
if not current then
  props = meta[7] + 1
  redis.call('ZADD', K, redis.call('HINCRBY', M, 'q', 1), prop)  -- last in the order
end
redis.call('RPUSH', LK, ARGV[12])
if drop > 0 then redis.call('LTRIM', LK, drop, -1) end
if not current then
  redis.call('HSET', S, prop, '\0' .. LK)
  redis.call('SADD', L, LK)
  touch(S, L, K)
end
redis.call('HSET', Z, prop, new)
touch(LK, Z)
return finish(meta, total, props)
