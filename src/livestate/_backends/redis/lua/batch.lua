-- Batch: an action's writes, all or none, at the version the node expects (ARGV[5]). The
-- node checked every op against the state at that version, in order, and sends what each
-- does to the keys (batch.py). The checks, all before the first write: the version, that
-- the live state is whole, that each list key is a list or absent, and the size limits,
-- op after op, as MemoryBackend checks them.
-- ARGV 8 the number of ops; then per op: its message body, its kind ('v' a value, 'l' a whole list,
-- 'a' an append, 'd' a delete), its property, the bytes it counts after the op ('' for a
-- delete), the KEYS index of its list key (0: it has none before or after), then for 'v'
-- the JSON, for 'l' the item count and the items, for 'a' how many of the oldest items
-- go and the item.
local meta, err = begin()
if not meta then return err end
if ARGV[5] == '' or string.sub(ARGV[5], 1, 1) == '@' then return {'conflict'} end
local ops, i = {}, 9
local total, count, limit, whole = meta[4] + 0, meta[7] + 0, meta[5] + 0, meta[6] + 0
local sizes = {}  -- property -> its bytes so far in this batch (false: absent)
for n = 1, tonumber(ARGV[8]) do
  local op = {body = ARGV[i], kind = ARGV[i + 1], prop = ARGV[i + 2], size = ARGV[i + 3]}
  local index = tonumber(ARGV[i + 4])
  i = i + 5
  local prop = op.prop
  local old = sizes[prop]
  if old == nil then
    old = redis.pcall('HGET', Z, prop)
    if type(old) == 'table' then return {'missing'} end
  end
  local new = false
  if op.kind ~= 'd' then
    new = op.size + 0
    if new - #prop > limit then return {'value_size', new - #prop, meta[5], prop} end
    if not old then count = count + 1 end
  elseif old then
    count = count - 1
  end
  total = total - (old or 0) + (new or 0)
  if total > whole then return {'state_size', total, meta[6], prop} end
  sizes[prop] = new
  if index > 0 then
    op.list = KEYS[index]
    if type(redis.pcall('LLEN', op.list)) == 'table' or not lists_whole() then
      return {'missing'}
    end
  end
  if op.kind == 'v' then
    op.json = ARGV[i]
    i = i + 1
  elseif op.kind == 'l' then
    op.first, op.last = i + 1, i + tonumber(ARGV[i])
    i = op.last + 1
  elseif op.kind == 'a' then
    op.drop, op.item = tonumber(ARGV[i]), ARGV[i + 1]
    i = i + 2
  end
  ops[n] = op
end
local bodies = {}
for n, op in ipairs(ops) do
  bodies[n] = op.body
  local prop, list = op.prop, op.list
  if op.kind == 'd' then
    redis.call('ZREM', K, prop)
    redis.call('HDEL', S, prop)
    redis.call('HDEL', Z, prop)
    if list then
      redis.call('DEL', list)
      redis.call('SREM', L, list)
    end
  else
    if redis.call('HEXISTS', S, prop) == 0 then
      redis.call('ZADD', K, redis.call('HINCRBY', M, 'q', 1), prop)  -- last in the order
    end
    if op.kind == 'v' then
      if list then  -- it held a list until now
        redis.call('DEL', list)
        redis.call('SREM', L, list)
      end
      redis.call('HSET', S, prop, op.json)
    else
      if op.kind == 'l' then
        redis.call('DEL', list)
        if op.last >= op.first then push(list, op.first, op.last) end
      else
        redis.call('RPUSH', list, op.item)
        if op.drop > 0 then redis.call('LTRIM', list, op.drop, -1) end
      end
      redis.call('HSET', S, prop, '\0' .. list)
      redis.call('SADD', L, list)
      touch(list)
    end
    redis.call('HSET', Z, prop, op.size)
  end
end
touch(S, Z, K)
touch(L)
return finish(meta, total, count, nil, bodies)
