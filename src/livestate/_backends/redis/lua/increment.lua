-- Increment: ARGV 8 property, 9 its weight, 10 the amount's JSON, 11 '1' if it is a float,
-- 12 to 15 the bounds the schema puts on the sum: low ('' none), '1' if strict, high, '1'
-- if strict (the node checked the amount's type; only here is the sum known).
-- The sum is the same IEEE double Python computes, written as Python's repr writes it,
-- so every replica and every later read agree to the byte.
local meta, err = begin()
if not meta then return err end
local prop, weight = ARGV[8], ARGV[9] + 0
local current, size = redis.pcall('HGET', S, prop), redis.pcall('HGET', Z, prop)
if type(size) == 'table' or type(current) == 'table' then return {'missing'} end
local old, float = 0, ARGV[11] == '1'
if current then
  local c = string.byte(current, 1)
  if not (c == 45 or (c >= 48 and c <= 57)) then return {'invalid', current} end
  old = current - 0  -- not `+ 0`: -0.0 + 0 is 0.0, where -0.0 - 0 stays -0.0, as in Python
  float = float or string.find(current, '[.eE]') ~= nil
end
local sum = old + ARGV[10]
local text
if float then
  text = python_float(sum)
  if not text then return {'invalid', current} end
else
  if sum > 9007199254740991 or sum < -9007199254740991 then return {'invalid', current} end
  text = string.format('%d', sum)
end
local low, high = ARGV[12], ARGV[14]
if low and low ~= '' and (sum < low + 0 or (ARGV[13] == '1' and sum == low + 0)) then
  return {'bounds', text}
end
if high and high ~= '' and (sum > high + 0 or (ARGV[15] == '1' and sum == high + 0)) then
  return {'bounds', text}
end
local before = 0
if size then before = size + 0 end
local new = weight + #text
local total = meta[4] - before + new
if #text > (meta[5] + 0) then return {'value_size', #text, meta[5]} end
if total > (meta[6] + 0) then return {'state_size', total, meta[6]} end
local count = nil
if not current then
  count = meta[7] + 1
  redis.call('ZADD', K, redis.call('HINCRBY', M, 'q', 1), prop)  -- last in the order
end
redis.call('HSET', S, prop, text)
redis.call('HSET', Z, prop, new)
if not current then touch(S, Z, K) end
return finish(meta, total, count, text)
