-- Put: ARGV 8 property, 9 its weight (name bytes as counted), 10 JSON bytes,
-- 11 'v' and 12 the JSON, or 'l' and 12... the items of a list. Declares L and LK only
-- for a list; replacing a list without them replies 'lists' (redis.py calls again with).
local meta, err = begin()
if not meta then return err end
local prop, weight, bytes = ARGV[8], ARGV[9] + 0, ARGV[10] + 0
local size, current = redis.pcall('HGET', Z, prop), redis.pcall('HGET', S, prop)
if type(size) == 'table' or type(current) == 'table' then return {'missing'} end
local old = 0
if size then old = size + 0 end
local new = weight + bytes
local total = meta[4] - old + new
if bytes > (meta[5] + 0) then return {'value_size', bytes, meta[5]} end
if total > (meta[6] + 0) then return {'state_size', total, meta[6]} end
local was_list = current and string.byte(current, 1) == 0
if (was_list or ARGV[11] == 'l') and not LK then return {'lists'} end
if ARGV[11] == 'l' and not was_list then redis.call('LLEN', LK) end  -- a wrong type fails here
if (was_list or ARGV[11] == 'l') and not lists_whole() then return {'missing'} end
local count = nil
if not size then
  count = meta[7] + 1
  redis.call('ZADD', K, redis.call('HINCRBY', M, 'q', 1), prop)  -- last in the order
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
