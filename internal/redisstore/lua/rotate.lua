-- rotate: replace a session's refresh ID. A refresh ID that is not the current
-- one has been used before: the token was copied, so the session is ended.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] user id  ARGV[3] session id  ARGV[4] token version
-- ARGV[5]  old refresh id  ARGV[6] new refresh id  ARGV[7] new refresh expiry (ms)
-- ARGV[8]  now (ms)  ARGV[9] TTL (ms)  ARGV[10] stream maxlen
-- Returns {"revoked"[, transition]}, {"inactive"}, {"reused", transition or ""} or {"ok"},
-- a transition being "<status>|<stream id>".
local uid, sid, now = ARGV[2], ARGV[3], tonumber(ARGV[8])
local u = redis.call('HMGET', k_user(uid), 'status', 'tv')
if not u[1] or u[2] ~= ARGV[4] then return {'revoked'} end
local skey = k_sessions(uid)
local rec = parse_session(redis.call('HGET', skey, sid) or '')
if not rec then return {'revoked'} end
if u[1] ~= 'active' then return {'inactive'} end
if rec.rexp <= now then
  end_session(uid, sid)
  local ev = apply(uid, 'logout', now, tonumber(ARGV[9]), tonumber(ARGV[10]), now)
  return {'revoked', ev or ''}
end
if rec.rid ~= ARGV[5] then
  end_session(uid, sid)
  local ev = apply(uid, 'logout', now, tonumber(ARGV[9]), tonumber(ARGV[10]), now)
  return {'reused', ev or ''}
end
rec.rid = ARGV[6]
rec.rexp = ARGV[7]
redis.call('HSET', skey, sid, format_session(rec))
return {'ok'}
