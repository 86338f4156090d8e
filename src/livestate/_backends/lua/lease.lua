-- Lease: node ARGV[4] holds the live state for ARGV[5] more ms (ARGV[3] 'hold'),
-- or lets go of it (ARGV[3] 'release'); returns the epoch and version, so the
-- heartbeat doubles as a cheap check that no message went missing.
if redis.call('EXISTS', M) == 0 then return {'missing'} end
local now = now_ms()
if ARGV[3] == 'hold' then
  redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[4])
else
  redis.call('ZREM', H, ARGV[4])
end
set_expiry(now)
local meta = redis.call('HMGET', M, 'e', 'v')
return {'ok', meta[1], meta[2]}
