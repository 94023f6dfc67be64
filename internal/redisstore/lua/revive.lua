-- revive: the heartbeat's slow path, run when SET XX found no live key. It
-- tells a revoked session from one whose TTL merely ran out, and brings the
-- latter back (the user goes online again if the expiry already took them
-- offline).
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] user id  ARGV[3] session id  ARGV[4] token version
-- ARGV[5]  now (ms)      ARGV[6] TTL (ms) ARGV[7] stream maxlen
-- ARGV[8]  "1" when the heartbeat reported no activity (the session comes back idle)
-- Returns {"revoked"[, transition]}, {"inactive"} or {"ok", online_status, transition or ""},
-- a transition being "<status>|<stream id>".
local uid, sid, now = ARGV[2], ARGV[3], tonumber(ARGV[5])
local u = redis.call('HMGET', k_user(uid), 'status', 'tv')
if not u[1] or u[2] ~= ARGV[4] then return {'revoked'} end
local raw = redis.call('HGET', k_sessions(uid), sid)
if not raw then return {'revoked'} end
if u[1] ~= 'active' then return {'inactive'} end
local rec = parse_session(raw)
if not rec or rec.rexp <= now then
  end_session(uid, sid)
  local ev = apply(uid, 'logout', now, tonumber(ARGV[6]), tonumber(ARGV[7]), now)
  return {'revoked', ev or ''}
end
local mark = active_mark(uid)
if ARGV[8] == '1' then mark = 'i' end
make_live(uid, sid, now, tonumber(ARGV[6]), mark)
local ev = apply(uid, 'heartbeat', now, tonumber(ARGV[6]), tonumber(ARGV[7]), now)
return {'ok', redis.call('HGET', k_user(uid), 'online_status'), ev or ''}
