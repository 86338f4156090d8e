-- Shared by every livestate script; the Python side prepends it to each one. Each function
-- defined in a part is made anew (a closure) on every call of a script that includes it,
-- so the parts are split by who uses them: this one, state.lua (whole live states),
-- write.lua (the writes), number.lua (increment) and roster.lua (presence).
--
-- KEYS (all under one hash tag, so a script touches one slot), by the names the scripts use;
-- redis.py declares each script's own (all of them unless `_DECLARES` says otherwise) and
-- puts `local M, S, ... = KEYS[1], KEYS[2], ...` before this part, so a key a script does
-- not declare is nil in it. In the order of redis.py's `_KEYS`:
--   M meta hash: e epoch, v version, g/p ACL masks, t TTL in ms (-1 none), T TTL as
--     written by Python, mv/ms size limits, n bytes of the whole state, c number of
--     properties, q the last place, w when the write-id hashes last turned over (ms),
--     L the data layout (LAYOUT), f what the spec that started it declares
--   S state hash: property -> JSON text, or "\0" .. list key for a list property
--   Z sizes hash: property -> bytes it counts towards the state (name + JSON)
--   H holders sorted set: node id -> lease end (ms)
--   L set of list keys
--   O start lock (SET NX PX while one node runs on_mount)
--   LK the list key of the property the operation names (or an unused name)
--   K order sorted set: property -> its place (from the meta hash's counter q), so a
--     snapshot lists properties in the order they were added, as a dict does
--   W write id -> the reply it got, for the writes of at least the last 10 seconds, so
--     a call retried after its reply was lost is answered, not applied again
--   V the previous W
--   P presence hash: ref ('<node>:<n>') -> the version it joined at, a space and its
--     JSON [identity, meta] (see roster.lua)
--   PN presence count hash: node id -> how many presences its clients show
-- ARGV: 1 the channel, 2 the publish command (SPUBLISH or PUBLISH); for a write, 3 the
-- caller's role ('g' or 'p'), 4 the permission bits it needs, 5 the version it expects
-- and the lifetime it was made for, as 'version@epoch' (each part may be empty; '' for
-- any), 6 the message body, 7 the write id ('' for none); its own from 8 on.
--
-- All or nothing: a script reads and checks everything before its first write, so an
-- error (a key of the wrong type, out of memory) leaves nothing half-written. User
-- JSON is never decoded here: cjson turns [] into {} and rounds integers above 2^53.
-- Only JSON numbers are parsed, for increment.
local CHANNEL, PUBLISH = ARGV[1], ARGV[2]

-- The data layout and message format of this release (the meta hash's L, and
-- `ls:layout` for the whole server); a live state of another layout is not touched.
local LAYOUT = '2'

-- RPUSH ARGV[first..last] onto `key`.
local function push(key, first, last)
  -- unpack() has a stack limit, so long lists go in chunks.
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end

-- Keys a script may have just created get the expiry of the meta hash.
local function touch(a, b, c)
  local at = redis.call('PEXPIRETIME', M)
  if at > 0 then
    redis.call('PEXPIREAT', a, at)
    if b then redis.call('PEXPIREAT', b, at) end
    if c then redis.call('PEXPIREAT', c, at) end
  end
end
