-- Stop: remove every key of the live state and publish that it stopped. ARGV 3 role,
-- 4 permission bits. Returns the epoch that ended.
local meta = redis.call('HMGET', M, 'v', ARGV[3], 'e')
if not meta[1] then return {'missing'} end
local need = tonumber(ARGV[4])
if bit.band(tonumber(meta[2] or '0'), need) ~= need then return {'denied'} end
local keys = all_keys()
keys[#keys + 1] = O
for _, k in ipairs(keys) do redis.call('DEL', k) end
redis.call(PUBLISH, CHANNEL, meta[3] .. '\n' .. meta[1] .. '\nstop')
return {'ok', meta[3]}
