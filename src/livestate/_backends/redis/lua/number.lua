-- Python's float arithmetic and repr, for increment (after common.lua).

-- The decimal digit string `digits` (exponent `exponent`) plus `step` (1 or -1) in its
-- last place, renormalised to the same length; nil when it would lose a digit.
local function nudge(digits, step, exponent)
  local out, carry = {}, step
  for i = #digits, 1, -1 do
    local d = string.byte(digits, i) - 48 + carry
    carry = 0
    if d > 9 then d, carry = 0, 1 elseif d < 0 then d, carry = 9, -1 end
    out[i] = string.char(48 + d)
  end
  local result = table.concat(out)
  if carry ~= 0 or string.sub(result, 1, 1) == '0' then return nil end
  return result, exponent
end

-- A finite double as Python's repr writes it (shortest digits that read back the
-- same, fixed notation for exponents -4..15, else 1e+16 style), or nil if not finite.
local function python_float(x)
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  if x == 0 then
    if 1 / x < 0 then return '-0.0' end
    return '0.0'
  end
  local sign, digits, exponent
  for precision = 0, 16 do
    local s = string.format('%.' .. precision .. 'e', x)
    local first, rest
    sign, first, rest, exponent = string.match(s, '^(-?)(%d)%.?(%d*)e([-+]%d+)$')
    exponent = tonumber(exponent)
    digits = first .. rest
    if tonumber(s) == x then break end
    -- On an exact tie the correctly rounded digits may miss while a neighbour reads
    -- back (Python's repr takes it): try the last digit one up and one down.
    local found = false
    for _, step in ipairs({1, -1}) do
      local d, e = nudge(digits, step, exponent)
      if d and tonumber(sign .. string.sub(d, 1, 1) .. '.' .. string.sub(d, 2) .. 'e' .. e) == x then
        digits, exponent, found = d, e, true
        break
      end
    end
    if found then break end
  end
  local first, rest = string.sub(digits, 1, 1), string.sub(digits, 2)
  if exponent < -4 or exponent >= 16 then
    local mantissa = first
    if #rest > 0 then mantissa = first .. '.' .. rest end
    local mark = '+'
    if exponent < 0 then mark = '-' end
    return sign .. mantissa .. 'e' .. mark .. string.format('%02d', math.abs(exponent))
  end
  if exponent < 0 then
    return sign .. '0.' .. string.rep('0', -exponent - 1) .. digits
  end
  if #digits <= exponent + 1 then
    return sign .. digits .. string.rep('0', exponent + 1 - #digits) .. '.0'
  end
  return sign .. string.sub(digits, 1, exponent + 1) .. '.' .. string.sub(digits, exponent + 2)
end
