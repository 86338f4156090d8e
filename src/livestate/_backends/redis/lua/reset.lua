-- Reset: replace the whole state. ARGV 8 group mask, 9 public mask, 10 TTL ms,
-- 11 TTL text, 12 total bytes, 13... the state (see write_state).
local meta, err = begin()
if not meta then return err end
local total = tonumber(ARGV[12])
if total > tonumber(meta[6]) then return {'state_size', total, meta[6]} end
local now = now_ms()
local at = expiry(now, tonumber(ARGV[10]))
drop_lists()
redis.call('DEL', S, Z, K)
local count = write_state(13)
redis.call('HSET', M, 'g', ARGV[8], 'p', ARGV[9], 't', ARGV[10], 'T', ARGV[11])
local reply = finish(meta, total, count)
set_expiry(now, at)
return reply
