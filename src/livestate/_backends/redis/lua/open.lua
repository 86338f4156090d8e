#!lua flags=allow-oom
-- Open: the live state's snapshot (holding it for ARGV[3] if ARGV[4] is '1', for
-- ARGV[5] ms), or 'mount' when this caller took the start lock (token ARGV[6], for
-- ARGV[7] ms) and must run on_mount, or 'wait' when another caller has it. A live
-- state that is not whole is cleared first, to be started anew. Holding works when
-- the server is out of memory, so clients can attach to what is running.
local meta = redis.call('HMGET', M, 'c', 't', 'L')
if meta[3] and meta[3] ~= LAYOUT then return {'layout', meta[3]} end
if not meta[2] or not intact(meta[1]) then
  if redis.call('SET', O, ARGV[6], 'NX', 'PX', ARGV[7]) then
    clear()
    return {'mount'}
  end
  return {'wait'}
end
if ARGV[4] == '1' then
  local now = now_ms()
  redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[3])
  sweep(now)
  set_expiry(now, expiry(now, tonumber(meta[2])))
end
return snapshot(nil)
