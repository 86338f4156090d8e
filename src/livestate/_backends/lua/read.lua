-- Read: the snapshot (only property ARGV[3], if given), or 'missing' (also when the
-- live state is not whole: the next open starts it anew).
local count = redis.call('HGET', M, 'c')
if not intact(count) then return {'missing'} end
if ARGV[3] == '' then return snapshot(nil) end
return snapshot(ARGV[3])
