-- Read: the snapshot (only property ARGV[3], if given; only the presence if ARGV[4] is
-- 'p'), or 'missing' (also when the live state is not whole: the next open starts it anew).
local meta = redis.call('HMGET', M, 'c', 'L')
if meta[2] and meta[2] ~= LAYOUT then return {'layout', meta[2]} end
if not intact(meta[1]) then return {'missing'} end
if ARGV[4] == 'p' then return snapshot(false) end
if ARGV[3] == '' then return snapshot(nil) end
return snapshot(ARGV[3])
