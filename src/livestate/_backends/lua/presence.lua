-- Presence: ARGV 8 'join' with 9 the client's ref and 10 its JSON [identity, meta] (a
-- join of a ref that is there changes its meta), or 'leave' with 9... the refs that go.
-- Refs gone already are skipped; when none is left, nothing changes (the reply names the
-- current version). Needs the read permission (ARGV[4]); see roster.lua for P and PN.
local meta, err = begin()
if not meta then return err end
redis.call('HLEN', P)  -- a key of the wrong type fails here, before any write
redis.call('HLEN', PN)
if ARGV[8] == 'join' then
  local ref = ARGV[9]
  if redis.call('HSET', P, ref, ARGV[10]) == 1 then
    redis.call('HINCRBY', PN, string.match(ref, '^[^:]*'), 1)
    touch(P, PN)
  end
else
  local gone = 0
  for i = 9, #ARGV do
    if redis.call('HDEL', P, ARGV[i]) == 1 then
      gone = gone + 1
      local node = string.match(ARGV[i], '^[^:]*')
      if redis.call('HINCRBY', PN, node, -1) <= 0 then redis.call('HDEL', PN, node) end
    end
  end
  if gone == 0 then return {'ok', meta[1], meta[3]} end
end
return finish(meta, tonumber(meta[4]), tonumber(meta[7]))
