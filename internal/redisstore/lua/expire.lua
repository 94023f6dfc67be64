-- expire: settle sessions whose TTL ran out. Used by the sweep (no members
-- given: take up to ARGV[5] entries from the head of the deadline index whose
-- deadline has passed) and by the keyspace listener (members given). An entry
-- is acted on only while it is still in the index, so running this twice, or
-- from two replicas, or from both paths, makes exactly one transition.
-- KEYS[1]  deadline index of the shard
-- ARGV[1]  shard prefix  ARGV[2] now (ms)  ARGV[3] TTL (ms)  ARGV[4] stream maxlen
-- ARGV[5]  sweep limit (0 when members are given)  ARGV[6..] members "uid:sid"
-- Returns {examined, {uid, last_seen, deadline, stream id or ""}...} with one
-- row per session that ended (the stream id is "" when the user stayed online
-- through another session).
local now, ttl, maxlen, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- members and their scores (false: not in the index), read in one command.
local members, scores = {}, {}
if limit > 0 then
  local r = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #r, 2 do
    members[#members + 1] = r[i]
    scores[#scores + 1] = r[i + 1]
  end
else
  for i = 6, #ARGV do members[#members + 1] = ARGV[i] end
  if #members > 0 then scores = redis.call('ZMSCORE', K_DEADLINES, unpack(members)) end
end
-- Members removed from the index by this call: when a user's last live
-- session ends, apply settles all their overdue sessions at once, and the
-- scores read above are stale for those.
local gone = {}
local out = {#members}
for i, m in ipairs(members) do
  local uid, sid = string.match(m, '^(%d+):(.+)$')
  local score = not gone[m] and scores[i]
  if not uid then
    redis.call('ZREM', K_DEADLINES, m)
  elseif score and limit == 0 and tonumber(score) > now then
    -- Listener path, but the deadline is in the future: a heartbeat raced
    -- the expiry (its SET XX missed, its ZADD XX moved the deadline) and is
    -- reviving the session now. If that heartbeat turns out to be revoked,
    -- the sweep settles the entry at its deadline.
  elseif score then
    local pttl = redis.call('PTTL', k_live(uid, sid))
    if pttl >= 0 then
      -- Still live (a heartbeat raced the index, or clocks differ): move the
      -- entry to the key's real deadline.
      redis.call('ZADD', K_DEADLINES, now + pttl, m)
    elseif pttl == -1 then
      -- A live key without a TTL would never expire; restore the TTL.
      redis.call('PEXPIRE', k_live(uid, sid), ttl)
      redis.call('ZADD', K_DEADLINES, now + ttl, m)
    else
      redis.call('ZREM', K_DEADLINES, m)
      gone[m] = true
      local last = tonumber(score) - ttl
      local skey = k_sessions(uid)
      local rec = parse_session(redis.call('HGET', skey, sid) or '')
      if rec then
        rec.last = tostring(last)
        redis.call('HSET', skey, sid, format_session(rec))
      end
      local ev = apply(uid, 'expired', now, ttl, maxlen, last, gone)
      out[#out + 1] = {tonumber(uid), last, tonumber(score), ev or ''}
    end
  end
end
return out
