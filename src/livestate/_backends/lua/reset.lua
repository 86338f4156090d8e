-- Reset: replace the whole state. ARGV 7 group mask, 8 public mask, 9 TTL ms,
-- 10 TTL text, 11 total bytes, 12... the state (see write_state).
local meta, err = begin()
if not meta then return err end
local total = tonumber(ARGV[11])
if total > tonumber(meta[6]) then return {'state_size', total, meta[6]} end
drop_lists()
redis.call('DEL', S, Z, K)
write_state(12)
redis.call('HSET', M, 'g', ARGV[7], 'p', ARGV[8], 't', ARGV[9], 'T', ARGV[10])
local version = finish(meta, total)
set_expiry(now_ms())
return {'ok', version, meta[3]}
