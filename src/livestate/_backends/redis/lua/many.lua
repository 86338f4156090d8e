-- Many: several writes to one live state in one call, from the writes a node queued while
-- its previous call to this live state was in flight (coalesce.py). Each is the script it
-- would be alone (put, delete, append or increment: scripts.py makes each a function, and
-- sets ARGV, WRITE and LK, which write.lua's functions and the scripts read, to each
-- write's own before running it; GIVEN is the call's own ARGV), run in turn: each makes its own checks (the live state
-- whole, its write id, the ACL, the fence, the sizes) before its own first write, and is
-- applied, at the next version, or refused on its own. A write that fails (a key of the
-- wrong type) fails before its first write too, so pcall leaves it undone and the others
-- stand. A write that replies 'lists' (a list it did not declare the keys of) is not
-- applied, and neither is any write after it ({'later'}): the node sends them again, one
-- by one and in order, so none overtakes it. The reply: one reply per write, in order,
-- each what its script alone replies, or {'error', message} for one that failed. What the
-- writes would each read and write again they share (BATCH, lua/write.lua): each checks the
-- meta hash as the writes before it left it (read once; a write of the other role reads
-- its permissions), and the call writes it back once at its end, publishes the writes
-- applied in one message (lua/write.lua's `announce`), and keeps every write's reply for
-- W in one HSET.
-- A call may be sent while the one before it is in flight (coalesce.py): it names that
-- one (ARGV 5), and is applied only if that one was, whole, or else replies {'wait'} with
-- nothing done, and the node sends it again once that one returned. A call applied whole
-- (something applied, nothing left for 'later') keeps its own name (ARGV 4) in W for that.
-- KEYS: M S Z K W V, then L and the list keys when a write names a list. ARGV 3 the number
-- of writes, 4 this call's name ('' none), 5 the name of the call it comes after ('' none);
-- then per write: its script, the KEYS index of its list key (0: none), how many arguments
-- follow, and those (its own ARGV from 3 on).
local after = GIVEN[5]
if after ~= '' and redis.pcall('HEXISTS', W, after) ~= 1
    and redis.pcall('HEXISTS', V, after) ~= 1 then
  return {'wait'}
end
local scripts = {put = put, delete = delete, append = append, increment = increment}
local replies, i, later = {}, 6, false
BATCH = true  -- the writes share the meta hash and write W once (lua/write.lua)
for n = 1, tonumber(GIVEN[3]) do
  local script, list, count = scripts[GIVEN[i]], tonumber(GIVEN[i + 1]), tonumber(GIVEN[i + 2])
  ARGV = {CHANNEL, PUBLISH}
  for j = 1, count do ARGV[j + 2] = GIVEN[i + 2 + j] end
  i = i + 3 + count
  WRITE = ARGV[7] or ''
  LK = nil
  if list > 0 then LK = KEYS[list] end
  if later then
    replies[n] = {'later'}
  else
    local ok, reply = pcall(script)
    if not ok then
      if type(reply) == 'table' then reply = reply.err end
      reply = {'error', tostring(reply)}
    elseif type(reply) == 'table' and reply[1] == 'lists' then
      later = true
    end
    replies[n] = reply
  end
end
-- What the writes left for the end: the meta hash's version, bytes and count, their one
-- message, and W (last: only its HSET can fail, and the writes are published by then).
if DIRTY then redis.call('HSET', M, 'v', META[1], 'n', META[4], 'c', META[7]) end
if FIRST then announce(META[3], FIRST, SENT) end
if GIVEN[4] ~= '' and DIRTY and not later then
  REPLIES[#REPLIES + 1], REPLIES[#REPLIES + 2] = GIVEN[4], '1'
end
keep()
return replies
