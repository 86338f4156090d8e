#!lua flags=allow-oom
-- Save: node ARGV[4] claims, or renews, the right to persist the live state for ARGV[5]
-- ms (ARGV[3] 'claim') unless another node's claim is unexpired, or gives it up (ARGV[3]
-- 'release': returns {'ok', 1 if it was the caller's}). The last of KEYS is the claim: the
-- key `:save`, holding the node id, with PX.
-- A claim returns {'ok', 1 if the caller holds it else 0, epoch, version, the number of
-- nodes whose hold is unexpired}, or {'missing', 1 if the caller holds the claim for the
-- last save} when the live state is not running. It runs when the server is out of
-- memory, as leases do.
local CLAIM = KEYS[#KEYS]
local holder = redis.call('GET', CLAIM)
if ARGV[3] == 'release' then
  if holder ~= ARGV[4] then return {'ok', 0} end
  redis.call('DEL', CLAIM)
  return {'ok', 1}
end
local meta = redis.call('HMGET', M, 'e', 'v', 'L')
if meta[3] ~= LAYOUT or not meta[1] then
  -- Ended: the claim stays for the last save, by its holder, else by the first node to
  -- ask; that node releases it once saved (else it lapses).
  if not holder then
    redis.call('SET', CLAIM, ARGV[4], 'PX', ARGV[5])
    holder = ARGV[4]
  end
  return {'missing', holder == ARGV[4] and 1 or 0}
end
local held = 0
if not holder or holder == ARGV[4] then
  redis.call('SET', CLAIM, ARGV[4], 'PX', ARGV[5])
  held = 1
end
-- ZRANGE BYSCORE, not ZCOUNT: the least-privilege ACL (docs/redis.md) grants ZRANGE.
return {'ok', held, meta[1], meta[2], #redis.call('ZRANGE', H, now_ms(), '+inf', 'BYSCORE')}
