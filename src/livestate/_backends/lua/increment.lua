-- Increment: ARGV 8 property, 9 its weight, 10 the amount's JSON, 11 '1' if it is a float.
-- The sum is the same IEEE double Python computes, written as Python's repr writes it,
-- so every replica and every later read agree to the byte.
local meta, err = begin()
if not meta then return err end
local prop, weight = ARGV[8], tonumber(ARGV[9])
local current = redis.call('HGET', S, prop)
local old, float = 0, ARGV[11] == '1'
if current then
  local c = string.byte(current, 1)
  if not (c == 45 or (c >= 48 and c <= 57)) then return {'invalid', current} end
  old = tonumber(current)
  float = float or string.find(current, '[.eE]') ~= nil
end
local sum = old + tonumber(ARGV[10])
local text
if float then
  text = python_float(sum)
  if not text then return {'invalid', current} end
else
  if sum > 9007199254740991 or sum < -9007199254740991 then return {'invalid', current} end
  text = int(sum)
end
local size = redis.call('HGET', Z, prop)
local before = tonumber(size or '0')
local new = weight + #text
local total = tonumber(meta[4]) - before + new
err = check_sizes(meta, #text, total)
if err then return err end
local count = tonumber(meta[7])
if not current then
  count = count + 1
  place(prop)
end
redis.call('HSET', S, prop, text)
redis.call('HSET', Z, prop, new)
if not current then touch(S, Z, K) end
return finish(meta, total, count, text)
