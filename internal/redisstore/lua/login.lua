-- login: start a session for an active user and mark it live.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] user id  ARGV[3] now (ms)  ARGV[4] TTL (ms)
-- ARGV[5]  stream maxlen ARGV[6] user agent  ARGV[7] refresh id  ARGV[8] refresh expiry (ms)
-- ARGV[9]  most sessions a user may have: the oldest beyond it are ended
-- Returns {"notfound"}, {"inactive"} or {"ok", session id, stream id or "",
-- user hash as a flat array, live session count}.
local uid, now, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local status = redis.call('HGET', k_user(uid), 'status')
if not status then return {'notfound'} end
if status ~= 'active' then return {'inactive'} end
prune_sessions(uid, now)
-- Every login is a session, kept until its refresh token expires (a week by
-- default), and the scripts walk a user's sessions: without a cap, logging in
-- again and again made each of that user's scripts slower, until one login
-- held Redis for tens of milliseconds (internal/redisstore
-- TestSessionsPerUserCapped). The oldest sessions give way; their tokens stop
-- working.
local recs = redis.call('HGETALL', k_sessions(uid))
local excess = #recs / 2 - tonumber(ARGV[9]) + 1
if excess > 0 then
  local byAge = {}
  for i = 1, #recs, 2 do
    local rec = parse_session(recs[i + 1])
    byAge[#byAge + 1] = {sid = recs[i], created = tonumber(rec and rec.created) or 0}
  end
  table.sort(byAge, function(a, b)
    if a.created ~= b.created then return a.created < b.created end
    return (tonumber(a.sid) or 0) < (tonumber(b.sid) or 0)
  end)
  for i = 1, excess do end_session(uid, byAge[i].sid) end
end
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
