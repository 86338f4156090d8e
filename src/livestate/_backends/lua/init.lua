-- Init: store what on_mount returned, unless another caller already started the
-- live state. ARGV: 3 node, 4 hold, 5 lease ms, 6 lock token, 7 epoch, 8 version,
-- 9 group mask, 10 public mask, 11 TTL ms, 12 TTL text, 13 max value bytes,
-- 14 max state bytes, 15 total bytes, 16... the state (see write_state).
if redis.call('EXISTS', M) == 1 then return {'exists'} end
write_state(16)
redis.call('HSET', M, 'e', ARGV[7], 'v', ARGV[8], 'g', ARGV[9], 'p', ARGV[10], 't', ARGV[11],
  'T', ARGV[12], 'mv', ARGV[13], 'ms', ARGV[14], 'n', ARGV[15])
if redis.call('GET', O) == ARGV[6] then redis.call('DEL', O) end
local now = now_ms()
if ARGV[4] == '1' then redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[3]) end
set_expiry(now)
-- Replicas of an earlier lifetime that hear this resynchronise.
redis.call(PUBLISH, CHANNEL, ARGV[7] .. '\n' .. ARGV[8] .. '\nstart')
return {'ok'}
