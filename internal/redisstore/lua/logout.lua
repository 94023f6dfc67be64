-- logout: end one session; the user goes offline if no other session is live.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] user id  ARGV[3] session id  ARGV[4] now (ms)
-- ARGV[5]  TTL (ms)      ARGV[6] stream maxlen  ARGV[7] reason
-- Returns {"revoked"} when the session was already gone, else {"ok", stream id or ""}.
local uid, sid, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('HEXISTS', k_sessions(uid), sid) == 0 then return {'revoked'} end
end_session(uid, sid)
local ev = apply(uid, ARGV[7], now, tonumber(ARGV[5]), tonumber(ARGV[6]), now)
return {'ok', ev or ''}
