-- lib.lua: helpers shared by every script; scripts.go prepends this file to
-- each script before loading it, so a script's KEYS/ARGV header follows it.
--
-- Convention for every script: KEYS[1] is a key of the shard (it routes the
-- script to the right node on Redis Cluster) and ARGV[1] is the shard's key
-- prefix, e.g. "presence:{0}:". Key names below mirror keys.go; the Go test
-- TestLuaKeysMatchGo keeps the two in step. Every key a script touches shares
-- the shard's hash tag, so all of them live in one slot.
--
-- Times are Unix milliseconds from the presenced clock (ARGV), not Redis TIME,
-- so that the heartbeat pipeline (no script) and the scripts agree.

local P = ARGV[1]
local function k_user(uid) return P .. 'user:' .. uid end
local function k_cred(uid) return P .. 'cred:' .. uid end
local function k_sessions(uid) return P .. 'sessions:' .. uid end
local function k_live(uid, sid) return P .. 'live:' .. uid .. ':' .. sid end
local K_DEADLINES = P .. 'deadlines'
local K_ONLINE = P .. 'online'
local K_EVENTS = P .. 'events'
local K_NAMES = P .. 'names'
local K_SEQ = P .. 'seq'

-- A session record is "created_ms|last_seen_ms|refresh_id|refresh_expires_ms|user_agent".
-- A delimited string (not a hash per session) keeps one small listpack hash per user.
local function parse_session(v)
  local c, l, r, e, ua = string.match(v, '^(%d*)|(%d*)|([^|]*)|(%d*)|(.*)$')
  if not c then return nil end
  return {created = c, last = l, rid = r, rexp = tonumber(e) or 0, ua = ua}
end

local function format_session(s)
  return s.created .. '|' .. s.last .. '|' .. s.rid .. '|' .. s.rexp .. '|' .. s.ua
end

local function emit(maxlen, uid, username, status, last_seen, reason, now)
  return redis.call('XADD', K_EVENTS, 'MAXLEN', '~', maxlen, '*',
    'user_id', uid, 'username', username or '', 'online_status', status,
    'last_seen', last_seen, 'reason', reason, 'at', now)
end

local function is_present(s) return s == 'online' or s == 'away' end

-- set_online marks uid online unless it already is; returns the stream ID of
-- the transition or false.
local function set_online(uid, reason, now, maxlen)
  local ukey = k_user(uid)
  local cur = redis.call('HMGET', ukey, 'online_status', 'username')
  if is_present(cur[1]) then return false end
  redis.call('HSET', ukey, 'online_status', 'online', 'last_seen', now)
  redis.call('SADD', K_ONLINE, uid)
  return emit(maxlen, uid, cur[2], 'online', now, reason, now)
end

-- set_offline marks uid offline with last_seen unless it already is; returns
-- the stream ID of the transition or false.
local function set_offline(uid, last_seen, reason, now, maxlen)
  local ukey = k_user(uid)
  local cur = redis.call('HMGET', ukey, 'online_status', 'username')
  if not is_present(cur[1]) then return false end
  redis.call('HSET', ukey, 'online_status', 'offline', 'last_seen', last_seen)
  redis.call('SREM', K_ONLINE, uid)
  return emit(maxlen, uid, cur[2], 'offline', last_seen, reason, now)
end

-- count_live counts the user's sessions whose live key exists. PTTL on a key
-- whose TTL ran out makes Redis delete it (and announce it) at once.
local function count_live(uid)
  local n = 0
  for _, sid in ipairs(redis.call('HKEYS', k_sessions(uid))) do
    if redis.call('PTTL', k_live(uid, sid)) ~= -2 then n = n + 1 end
  end
  return n
end

-- settle_offline is called when the user has no live session left: it folds
-- every still-indexed (overdue) session of the user into this one decision,
-- taking the latest activity as last_seen, so their own expiry events later
-- find nothing to do. Returns the stream ID or false.
local function settle_offline(uid, last_seen, reason, now, ttl, maxlen)
  local skey = k_sessions(uid)
  for _, sid in ipairs(redis.call('HKEYS', skey)) do
    local m = uid .. ':' .. sid
    local score = redis.call('ZSCORE', K_DEADLINES, m)
    if score then
      redis.call('ZREM', K_DEADLINES, m)
      local last = tonumber(score) - ttl
      if last > last_seen then last_seen = last end
      local rec = parse_session(redis.call('HGET', skey, sid) or '')
      if rec then
        rec.last = tostring(last)
        redis.call('HSET', skey, sid, format_session(rec))
      end
    end
  end
  return set_offline(uid, last_seen, reason, now, maxlen)
end

-- end_session removes one session (record, live key, index entry).
local function end_session(uid, sid)
  redis.call('HDEL', k_sessions(uid), sid)
  redis.call('DEL', k_live(uid, sid))
  redis.call('ZREM', K_DEADLINES, uid .. ':' .. sid)
end

-- end_all ends every session of uid, bumps the token version and takes the
-- user offline. Returns the stream ID or false.
local function end_all(uid, reason, now, maxlen)
  local skey = k_sessions(uid)
  for _, sid in ipairs(redis.call('HKEYS', skey)) do
    redis.call('DEL', k_live(uid, sid))
    redis.call('ZREM', K_DEADLINES, uid .. ':' .. sid)
  end
  redis.call('DEL', skey)
  redis.call('HINCRBY', k_user(uid), 'tv', 1)
  return set_offline(uid, now, reason, now, maxlen)
end

-- make_live (re)starts a session's TTL and indexes its deadline.
local function make_live(uid, sid, now, ttl)
  redis.call('SET', k_live(uid, sid), '1', 'PX', ttl)
  redis.call('ZADD', K_DEADLINES, now + ttl, uid .. ':' .. sid)
end

-- prune_sessions ends the user's sessions whose refresh token has expired:
-- such a session can never be used again.
local function prune_sessions(uid, now)
  local all = redis.call('HGETALL', k_sessions(uid))
  for i = 1, #all, 2 do
    local rec = parse_session(all[i + 1])
    if not rec or rec.rexp <= now then end_session(uid, all[i]) end
  end
end
