-- Open: the live state's snapshot (holding it for ARGV[3] if ARGV[4] is '1', for
-- ARGV[5] ms), or 'mount' when this caller took the start lock (token ARGV[6], for
-- ARGV[7] ms) and must run on_mount, or 'wait' when another caller has it.
if redis.call('EXISTS', M) == 0 then
  if redis.call('SET', O, ARGV[6], 'NX', 'PX', ARGV[7]) then return {'mount'} end
  return {'wait'}
end
if ARGV[4] == '1' then
  local now = now_ms()
  redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[3])
  set_expiry(now)
end
return snapshot(nil)
