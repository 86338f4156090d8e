-- Stop: remove every key of the live state and publish that it stopped.
local meta, err = begin()
if not meta then return err end
local keys = all_keys()
keys[#keys + 1] = O
for _, k in ipairs(keys) do redis.call('DEL', k) end
redis.call(PUBLISH, CHANNEL, meta[3] .. '\n' .. meta[1] .. '\nstop')
return {'ok'}
