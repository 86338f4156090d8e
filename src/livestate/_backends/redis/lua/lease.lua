#!lua flags=allow-oom
-- Lease: node ARGV[4] holds the live state for ARGV[5] more ms (ARGV[3] 'hold'),
-- or lets go of it (ARGV[3] 'release'); returns the epoch, version and number of
-- presences, so the heartbeat doubles as a cheap check that no message went missing
-- and no presence key was lost alone, and removes the
-- presences of nodes whose hold ended (see roster.lua's sweep). It runs even
-- when the server is out of memory (it adds nothing that was not there), so leases
-- never lapse under attached clients while writes are refused.
local meta = redis.call('HMGET', M, 'e', 'v', 't', 'c', 'L')
if meta[5] ~= LAYOUT or not intact(meta[4]) then return {'missing'} end
local now = now_ms()
if ARGV[3] == 'hold' then
  redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[4])
else
  redis.call('ZREM', H, ARGV[4])
end
-- The presences of nodes that hold it no more (this one, on release) go.
local version = sweep(now) or meta[2]
set_expiry(now, expiry(now, tonumber(meta[3])))
return {'ok', meta[1], version, recount()}
