-- Init: store what on_mount returned, unless another caller already started the
-- live state; the first version comes from the server's clock (see first_version).
-- ARGV: 3 node, 4 hold, 5 lease ms, 6 lock token, 7 epoch, 8 group mask,
-- 9 public mask, 10 TTL ms, 11 TTL text, 12 max value bytes, 13 max state bytes,
-- 14 total bytes, 15 the spec's declaration, 16... the state (see write_state). Returns
-- the version.
if redis.call('EXISTS', M) == 1 then return {'exists'} end
local now_micro = now_us()
local now = math.floor(now_micro / 1000)
local version = int(now_micro)
clear()  -- what is left of a live state that was not whole
write_state(16)
redis.call('HSET', M, 'e', ARGV[7], 'v', version, 'g', ARGV[8], 'p', ARGV[9], 't', ARGV[10],
  'T', ARGV[11], 'mv', ARGV[12], 'ms', ARGV[13], 'n', ARGV[14], 'f', ARGV[15], 'L', LAYOUT,
  'w', now)
-- The write-id hashes exist from the start (one empty field each): the writes declare
-- them, and on a cluster a script waits (TRYAGAIN) during a slot migration while a key it
-- declares is missing, as if it had moved already.
redis.call('HSET', W, '', '')
redis.call('HSET', V, '', '')
if redis.call('GET', O) == ARGV[6] then redis.call('DEL', O) end
if ARGV[4] == '1' then redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[3]) end
set_expiry(now, expiry(now, tonumber(ARGV[10])))
-- Replicas of an earlier lifetime that hear this resynchronise.
redis.call(PUBLISH, CHANNEL, ARGV[7] .. '\n' .. version .. '\nstart')
return {'ok', version}
