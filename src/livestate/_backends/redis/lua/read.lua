-- Read: the snapshot (only property ARGV[3], if given; only the presence if ARGV[4] is
-- 'p'), or 'missing' (also when the live state is not whole: the next open starts it anew).
local meta = redis.call('HMGET', M, 'c', 'L')
if meta[2] and meta[2] ~= LAYOUT then return {'layout', meta[2]} end
if not intact(meta[1]) then return {'missing'} end
if ARGV[3] ~= '' then return snapshot(ARGV[3]) end
local reply
if ARGV[4] == 'p' then reply = snapshot(false) else reply = snapshot(nil) end
reply[10] = living(reply[10], now_ms())
return reply
