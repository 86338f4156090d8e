-- Read: the snapshot (only property ARGV[3], if given), or 'missing'.
if redis.call('EXISTS', M) == 0 then return {'missing'} end
if ARGV[3] == '' then return snapshot(nil) end
return snapshot(ARGV[3])
