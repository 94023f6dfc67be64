-- login: start a session for an active user and mark it live.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] user id  ARGV[3] now (ms)  ARGV[4] TTL (ms)
-- ARGV[5]  stream maxlen ARGV[6] user agent  ARGV[7] refresh id  ARGV[8] refresh expiry (ms)
-- Returns {"notfound"}, {"inactive"} or {"ok", session id, stream id or "",
-- user hash as a flat array, live session count}.
local uid, now, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local status = redis.call('HGET', k_user(uid), 'status')
if not status then return {'notfound'} end
if status ~= 'active' then return {'inactive'} end
prune_sessions(uid, now)
local sid = tostring(redis.call('HINCRBY', k_user(uid), 'sq', 1))
redis.call('HSET', k_sessions(uid), sid,
  format_session({created = ARGV[3], last = ARGV[3], rid = ARGV[7], rexp = ARGV[8], ua = ARGV[6]}))
make_live(uid, sid, now, ttl, active_mark(uid))
local ev = apply(uid, 'login', now, ttl, tonumber(ARGV[5]), now)
local live = 0
for _, s in ipairs(redis.call('HKEYS', k_sessions(uid))) do
  live = live + redis.call('EXISTS', k_live(uid, s))
end
return {'ok', sid, ev or '', redis.call('HGETALL', k_user(uid)), live}
