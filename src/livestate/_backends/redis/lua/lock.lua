-- Lock: extend the start lock (ARGV[3] 'extend', for ARGV[5] ms) or give it up
-- (ARGV[3] 'unlock'), if the caller (token ARGV[4]) still holds it.
if redis.call('GET', O) ~= ARGV[4] then return 0 end
if ARGV[3] == 'extend' then return redis.call('PEXPIRE', O, ARGV[5]) end
return redis.call('DEL', O)
