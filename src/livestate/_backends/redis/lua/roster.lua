-- Presence (see _presence.py), for the scripts that change who holds a live state, and
-- reads (after common.lua and state.lua). P maps each client's ref ('<node>:<n>') to the
-- version it joined at and its JSON [identity, meta]; PN counts each node's refs, so
-- finding the nodes to sweep reads a few fields, not P.

-- The nodes with presences that no longer hold the live state (a set), or nil if none.
local function departed(now)
  local dead = nil
  for _, node in ipairs(redis.call('HKEYS', PN)) do
    local lease = redis.call('ZSCORE', H, node)
    if not lease or tonumber(lease) <= now then
      dead = dead or {}
      dead[node] = true
    end
  end
  return dead
end

-- The presences of every node that no longer holds the live state (its lease lapsed: it
-- died or was cut off; or it let go) go, in one `leave` at the next version. Returns that
-- version, or nil when nothing went. Runs when the holders change, under OOM too (it only
-- removes).
local function sweep(now)
  local dead = departed(now)
  if not dead then return nil end
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

-- The number of presences. A count hash lost alone (evicted, deleted) is made again from
-- P, so that sweeps still find its nodes.
local function recount()
  local present = redis.call('HLEN', P)
  if present > 0 and redis.call('EXISTS', PN) == 0 then
    for _, ref in ipairs(redis.call('HKEYS', P)) do
      redis.call('HINCRBY', PN, string.match(ref, '^[^:]*'), 1)
    end
    touch(PN)
  end
  return present
end

-- A snapshot's presence (HGETALL of P) without the presences of nodes whose hold ended:
-- what a read shows before any holder's heartbeat has swept them. Only reads.
local function living(flat, now)
  if #flat == 0 then return flat end
  local dead = departed(now)
  if not dead then return flat end
  local kept = {}
  for i = 1, #flat, 2 do
    if not dead[string.match(flat[i], '^[^:]*')] then
      kept[#kept + 1] = flat[i]
      kept[#kept + 1] = flat[i + 1]
    end
  end
  return kept
end
