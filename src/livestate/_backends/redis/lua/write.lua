-- What the writes share (after common.lua): the checks before the first write and the end
-- of every write. Kept to a few functions (each is a closure made on every call); the rare
-- paths are written inline.

-- Numbers come as text (ARGV, HMGET): `text + 0` reads one with one strtod, where
-- tonumber(text) runs two, and they are most of the Lua time of a write.

-- ARGV[7] is the write id; a retry has '+' before it (an id the caller chose, 'u:', has it
-- always: the caller may be retrying a write it made before). Every write looks its id up,
-- the first sending too: a server that stalled past the node's timeout may run a first
-- sending left on the dropped connection after its retry on a new one was applied. A
-- write found applied answers its first reply, marked with '!', and is not applied again.
local WRITE = ARGV[7] or ''
-- Whether the live state was found whole already in this call (lua/many.lua runs several
-- writes in one call: nothing from outside comes between them, and each keeps it whole).
local WHOLE = false
-- In lua/many.lua (BATCH), the writes of the call share what each would read and write
-- again: the first one reads the meta hash (META; ROLE: whose permissions it holds), the
-- next ones take it from there, each updates it in place (DIRTY), and the call writes it
-- back once at its end, as it does the replies for W (`keep`; REPLIES: id, reply, id,
-- reply...; DONE: id -> reply, found by a retry in the same call; FRESH: W is new).
local BATCH, META, ROLE, DIRTY, REPLIES, DONE, FRESH = false, nil, nil, false, {}, {}, false
-- In a batch, the message bodies of the writes applied, from version FIRST on: many.lua
-- publishes them in one message at its end (`announce`).
local SENT, FIRST = {}, nil

-- The checks every write makes before its first write command. Returns the meta fields
-- (v, role mask, e, n, mv, ms, c, w, L), or nil and the reply: 'layout' (another
-- release's live state), 'missing' (also when the live state is not whole), 'denied',
-- 'stale' (ARGV[5] names another lifetime) or 'conflict' (another version), or the reply
-- a retried write already got (see finish).
--
-- Whole, as a write needs it, in two commands: the meta hash is there, the order set is a
-- sorted set of as many properties as the meta hash counts, and the state and sizes hashes
-- exist exactly when there are properties, so none was evicted or deleted. Each write
-- reads the state and sizes hashes through pcall before its first write, and a hash of
-- another type makes it reply 'missing' too. The counts of the two hashes are checked by every read, open and
-- heartbeat (state.lua's `intact`), which start a live state anew when one is off.
local function begin()
  local meta = META
  if not meta then
    meta = redis.call('HMGET', M, 'v', ARGV[3], 'e', 'n', 'mv', 'ms', 'c', 'w', 'L')
    if BATCH then META, ROLE = meta, ARGV[3] end
  elseif ROLE ~= ARGV[3] then  -- a write of the other role in the call: its permissions
    meta[2], ROLE = redis.call('HGET', M, ARGV[3]), ARGV[3]
  end
  if meta[9] and meta[9] ~= LAYOUT then return nil, {'layout', meta[9]} end
  if not meta[1] or not meta[7] then return nil, {'missing'} end
  if not WHOLE then
    local count = meta[7] + 0
    local hashes = 0
    if count > 0 then hashes = 2 end
    if redis.pcall('ZCARD', K) ~= count or redis.call('EXISTS', S, Z) ~= hashes then
      return nil, {'missing'}
    end
    WHOLE = true
  end
  if string.byte(WRITE, 1) == 43 then WRITE = string.sub(WRITE, 2) end
  if WRITE ~= '' then
    -- A W or V written over from outside answers nothing (pcall): the write goes ahead.
    local done = DONE[WRITE] or redis.pcall('HGET', W, WRITE)
    if type(done) ~= 'string' then done = redis.pcall('HGET', V, WRITE) end
    if type(done) == 'string' then return nil, '!' .. done end  -- '!': applied before
  end
  -- Masks and permissions are 0 to 15: two digits read without tonumber (strtod is slow).
  local a, b = string.byte(meta[2] or '0', 1, 2)
  local mask = a - 48
  if b then mask = mask * 10 + b - 48 end
  local need = string.byte(ARGV[4], 1) - 48
  if #ARGV[4] > 1 then need = need * 10 + string.byte(ARGV[4], 2) - 48 end
  if bit.band(mask, need) ~= need then return nil, {'denied'} end
  if ARGV[5] ~= '' then
    -- The fence: '<version>@<epoch>' (either part may be empty). A write made for a lifetime
    -- that ended (its node paused past the end, say) must not land in the next one.
    local expect, epoch = ARGV[5], ''
    local at = string.find(expect, '@', 1, true)
    if at then expect, epoch = string.sub(expect, 1, at - 1), string.sub(expect, at + 1) end
    if epoch ~= '' and epoch ~= meta[3] then return nil, {'stale', meta[3]} end
    if expect ~= '' and expect ~= meta[1] then return nil, {'conflict'} end
  end
  return meta
end

-- Whether the set of list keys is a set, or absent: checked before the first write by a
-- write that will add to it or take from it (one of another type fails the script).
local function lists_whole()
  return type(redis.pcall('SCARD', L)) ~= 'table'
end

-- Write the replies noted in REPLIES to W, in chunks (unpack() has a stack limit). W is
-- only a cache of replies: one written over from outside is started again. A new W gets
-- the live state's expiry.
local function keep()
  for first = 1, #REPLIES, 1000 do
    local chunk = {unpack(REPLIES, first, math.min(first + 999, #REPLIES))}
    if type(redis.pcall('HSET', W, unpack(chunk))) == 'table' then
      redis.call('DEL', W)
      redis.call('HSET', W, unpack(chunk))
      FRESH = true
    end
  end
  if FRESH then touch(W) end
end

-- Publish the bodies of the writes applied at versions `first`, first + 1, ... of
-- lifetime `epoch`: one as 'epoch \n version \n body', several in one message, 'epoch \n
-- first \n many \n body \n body ...' (a body is three lines: head, clock, value; JSON
-- text has no line breaks), which a node takes in at once (channels.py). A node of an
-- older release cannot read 'many' and loads the live state anew: never a partial read.
local function announce(epoch, first, bodies)
  local head = epoch .. '\n' .. string.format('%d', first) .. '\n'
  if #bodies == 1 then
    redis.call(PUBLISH, CHANNEL, head .. bodies[1])
  elseif #bodies > 1 then
    redis.call(PUBLISH, CHANNEL, head .. 'many\n' .. table.concat(bodies, '\n'))
  end
end

-- Raise the version, remember the write's reply, publish (epoch, version, ARGV[6]);
-- returns the reply: one string, 'version \n epoch \n result' (one bulk string costs the
-- server less to send than a list). `count` is the new number of properties (nil:
-- unchanged), `result` increment's sum. With `bodies` (an action), those are published,
-- at the next versions in turn, instead of ARGV[6]; in many.lua (BATCH), ARGV[6] waits
-- in SENT for the call's one message. The reply of write WRITE is kept in W;
-- W turns into V every 256
-- versions once it is over 10 s old, so an id lives 10 s at least (any retry comes
-- sooner), and the clock is read on one write in 256 only.
local function finish(meta, total, count, result, bodies)
  local number = meta[1] + (bodies and #bodies or 1)
  local version = string.format('%d', number)
  if BATCH then
    meta[1], meta[4], DIRTY = version, total, true
    if count then meta[7] = count end
  elseif count then
    redis.call('HSET', M, 'v', version, 'n', total, 'c', count)
  else
    redis.call('HSET', M, 'v', version, 'n', total)
  end
  local reply = version .. '\n' .. meta[3] .. '\n' .. (result or '')
  if WRITE ~= '' then
    local fresh = false
    if not meta[8] or number % 256 == 0 then
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      if not meta[8] or now - tonumber(meta[8]) > 10000 then
        if redis.call('EXISTS', W) == 1 then redis.call('RENAME', W, V) else redis.call('DEL', V) end
        redis.call('HSET', M, 'w', now)
        meta[8], fresh = now, true
      end
    end
    REPLIES[#REPLIES + 1], REPLIES[#REPLIES + 2], DONE[WRITE] = WRITE, reply, reply
    FRESH = FRESH or fresh
    if not BATCH then keep() end
  end
  if bodies then
    announce(meta[3], number - #bodies + 1, bodies)
  elseif BATCH then
    FIRST = FIRST or number
    SENT[#SENT + 1] = ARGV[6]
  else
    redis.call(PUBLISH, CHANNEL, meta[3] .. '\n' .. version .. '\n' .. ARGV[6])
  end
  return reply
end
