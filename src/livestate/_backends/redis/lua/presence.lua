-- Presence: ARGV 8 'join' with 9 the client's ref, 10 its JSON [identity, meta] and 11
-- the node's lease (ms), or 'leave' with 9... the refs that go. A join stores the JSON
-- after the version the ref joined at (a join of a ref that is there changes its meta and
-- keeps that version, so every node lists presences in the same order). A node that
-- shows a presence holds the live state, so no sweep takes it in the moment before its
-- heartbeat would (say, in a lifetime another node just started). Refs gone already are
-- skipped; when none is left, nothing changes (the reply names the current version).
-- Needs the read permission (ARGV[4]); see roster.lua for P and PN.
local meta, err = begin()
if not meta then return err end
redis.call('HLEN', P)  -- a key of the wrong type fails here, before any write
redis.call('HLEN', PN)
if ARGV[8] == 'join' then
  local ref = ARGV[9]
  local node = string.match(ref, '^[^:]*')
  local old = redis.call('HGET', P, ref)
  local joined = old and string.match(old, '^%d+') or int(tonumber(meta[1]) + 1)
  local lease = redis.call('ZSCORE', H, node)
  local now = now_ms()
  if not lease or tonumber(lease) <= now then
    redis.call('ZADD', H, now + tonumber(ARGV[11]), node)
    set_expiry(now, expiry(now, tonumber(redis.call('HGET', M, 't'))))
  end
  redis.call('HSET', P, ref, joined .. ' ' .. ARGV[10])
  if not old then
    redis.call('HINCRBY', PN, node, 1)
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
  if gone == 0 then return meta[1] .. '\n' .. meta[3] .. '\n' end  -- as finish replies
end
return finish(meta, meta[4])
