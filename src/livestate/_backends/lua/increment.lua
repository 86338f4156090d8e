-- Increment: ARGV 7 property, 8 its weight, 9 the amount's JSON, 10 '1' if it is a float.
-- The sum is the same IEEE double Python computes, written as Python's repr writes it,
-- so every replica and every later read agree to the byte.
local meta, err = begin()
if not meta then return err end
local prop, weight = ARGV[7], tonumber(ARGV[8])
local current = redis.call('HGET', S, prop)
local old, float = 0, ARGV[10] == '1'
if current then
  local c = string.byte(current, 1)
  if not (c == 45 or (c >= 48 and c <= 57)) then return {'invalid', current} end
  old = tonumber(current)
  float = float or string.find(current, '[.eE]') ~= nil
end
local sum = old + tonumber(ARGV[9])
local text
if float then
  text = python_float(sum)
  if not text then return {'invalid', current} end
else
  if sum > 9007199254740991 or sum < -9007199254740991 then return {'invalid', current} end
  text = string.format('%d', sum)
end
local size = redis.call('HGET', Z, prop)
local before = tonumber(size or '0')
local new = weight + #text
local total = tonumber(meta[4]) - before + new
err = check_sizes(meta, #text, total)
if err then return err end
redis.call('HSET', S, prop, text)
redis.call('HSET', Z, prop, new)
if not current then
  place(prop)
  touch(S, Z, K)
end
return {'ok', finish(meta, total), meta[3], text}
