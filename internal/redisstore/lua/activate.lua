-- activate: the heartbeat's fast path (SET ... XX GET) found a marked live
-- key (the session was idle, or the user has a manual override) and has
-- already stored the new activity. This re-applies the user's status (away ->
-- online when an idle user is active again) and re-marks the key while an
-- override lasts.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] user id  ARGV[3] session id  ARGV[4] now (ms)
-- ARGV[5]  TTL (ms)      ARGV[6] stream maxlen
-- Returns {"gone"} when the live key vanished meanwhile, else
-- {"ok", online_status, stream id or ""}.
local uid, sid, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local lkey = k_live(uid, sid)
if redis.call('EXISTS', lkey) == 0 then return {'gone'} end
local ev = apply(uid, 'heartbeat', now, tonumber(ARGV[5]), tonumber(ARGV[6]), now)
if active_mark(uid) == 'm' then
  local kind, ms = parse_live(redis.call('GET', lkey))
  if kind == '' then redis.call('SET', lkey, 'm' .. ms, 'KEEPTTL') end
end
return {'ok', redis.call('HGET', k_user(uid), 'online_status'), ev or ''}
