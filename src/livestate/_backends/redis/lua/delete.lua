-- Delete: ARGV 8 property. Declares L and LK only for a list; deleting a list without
-- them replies 'lists' (redis.py calls again with them).
local meta, err = begin()
if not meta then return err end
local prop = ARGV[8]
local current, size = redis.pcall('HGET', S, prop), redis.pcall('HGET', Z, prop)
if type(size) == 'table' or type(current) == 'table' then return {'missing'} end
if not current then return {'invalid'} end
local is_list = string.byte(current, 1) == 0
if is_list and not LK then return {'lists'} end
if is_list and not lists_whole() then return {'missing'} end
redis.call('ZREM', K, prop)
if is_list then
  redis.call('DEL', LK)
  redis.call('SREM', L, LK)
end
redis.call('HDEL', S, prop)
redis.call('HDEL', Z, prop)
return finish(meta, meta[4] - tonumber(size or '0'), meta[7] - 1)
