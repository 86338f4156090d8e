-- Presence (see _presence.py), for the scripts that change who holds a live state (after
-- common.lua). P maps each client's ref ('<node>:<n>') to its JSON [identity, meta]; PN
-- counts each node's refs, so that finding the nodes to sweep reads a few fields, not P.

-- The presences of every node that no longer holds the live state (its lease lapsed: it
-- died or was cut off; or it let go) go, in one `leave` at the next version. Returns that
-- version, or nil when nothing went. Runs when the holders change, under OOM too (it only
-- removes).
local function sweep(now)
  local nodes = redis.call('HKEYS', PN)
  if #nodes == 0 then return nil end
  local dead = {}
  local any = false
  for _, node in ipairs(nodes) do
    local lease = redis.call('ZSCORE', H, node)
    if not lease or tonumber(lease) <= now then
      dead[node] = true
      any = true
    end
  end
  if not any then return nil end
  local refs = {}
  for _, ref in ipairs(redis.call('HKEYS', P)) do
    if dead[string.match(ref, '^[^:]*')] then refs[#refs + 1] = ref end
  end
  for node in pairs(dead) do redis.call('HDEL', PN, node) end
  if #refs == 0 then return nil end
  for i = 1, #refs, 1000 do
    redis.call('HDEL', P, unpack(refs, i, math.min(i + 999, #refs)))
  end
  local meta = redis.call('HMGET', M, 'v', 'e')
  local version = int(tonumber(meta[1]) + 1)
  redis.call('HSET', M, 'v', version)
  redis.call(PUBLISH, CHANNEL, meta[2] .. '\n' .. version .. '\n["leave",null,null]\n'
    .. int(now_us()) .. '\n["' .. table.concat(refs, '","') .. '"]')
  return version
end
