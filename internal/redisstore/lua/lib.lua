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
local K_IDLESCAN = P .. 'idlescan'

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

-- A live key's value is the session's last activity in ms, with a one-letter
-- mark when the heartbeat's fast path must hand over to a script:
--   "<ms>"   active session
--   "i<ms>"  idle: no activity for PRESENCE_AWAY_AFTER (set by the idle scan)
--   "m<ms>"  active, but the user has a manual status override
-- The fast path (SET ... XX GET) sees the old value and runs activate.lua
-- when it carries a mark.
local function parse_live(v)
  local kind, ms = string.match(v or '', '^([im]?)(%d+)$')
  return kind, tonumber(ms)
end

-- fold_overdue settles the user's sessions that are still in the deadline
-- index although their live key is gone (TTL ran out, not yet settled by the
-- listener or the sweep): their entries go, their record keeps the last
-- activity, and the latest last activity is returned. apply calls it only
-- when no live key of the user is left, so every indexed session of sids is
-- overdue. Four commands whatever the number of sessions: a mass expiry of
-- users with many sessions each is bounded by Redis time per call, not per
-- session. gone, when given, collects the removed members (see expire.lua).
local function fold_overdue(uid, latest, ttl, sids, gone)
  if #sids == 0 then return latest end
  local skey = k_sessions(uid)
  local members = {}
  for i, sid in ipairs(sids) do members[i] = uid .. ':' .. sid end
  local scores = redis.call('ZMSCORE', K_DEADLINES, unpack(members))
  local rm, rmsids, lasts = {}, {}, {}
  for i = 1, #members do
    if scores[i] then
      local last = tonumber(scores[i]) - ttl
      if last > latest then latest = last end
      rm[#rm + 1] = members[i]
      rmsids[#rmsids + 1] = sids[i]
      lasts[#lasts + 1] = last
      if gone then gone[members[i]] = true end
    end
  end
  if #rm == 0 then return latest end
  redis.call('ZREM', K_DEADLINES, unpack(rm))
  local recs = redis.call('HMGET', skey, unpack(rmsids))
  local upd = {}
  for i = 1, #rmsids do
    local rec = parse_session(recs[i] or '')
    if rec then
      rec.last = tostring(lasts[i])
      upd[#upd + 1] = rmsids[i]
      upd[#upd + 1] = format_session(rec)
    end
  end
  if #upd > 0 then redis.call('HSET', skey, unpack(upd)) end
  return latest
end

-- apply recomputes the status others see from the user's live sessions and
-- manual override, and makes the transition if it changed: it writes
-- online_status and last_seen, keeps the online set in step and appends to the
-- stream, all in the calling script. Rules:
--   no live session             -> offline, last_seen = last activity (ARG last)
--   override "offline"          -> offline (invisible): last_seen frozen at the switch
--   override "away", or every live session idle -> away
--   otherwise                   -> online
-- An override never makes a user without a live session look present. An
-- override whose "until" has passed is removed here. Returns
-- "<new status>|<stream ID>" when it made a transition, else false. gone is
-- passed on to fold_overdue.
local function apply(uid, reason, now, ttl, maxlen, last, gone)
  local ukey = k_user(uid)
  local live, active = 0, 0
  -- One HKEYS and one MGET, not a GET per session: a user with many
  -- sessions costs the same two commands on every change.
  local sids = redis.call('HKEYS', k_sessions(uid))
  if #sids > 0 then
    local keys = {}
    for i, sid in ipairs(sids) do keys[i] = k_live(uid, sid) end
    local vals = redis.call('MGET', unpack(keys))
    for i = 1, #sids do
      if vals[i] then
        live = live + 1
        if parse_live(vals[i]) ~= 'i' then active = active + 1 end
      end
    end
  end
  local u = redis.call('HMGET', ukey, 'online_status', 'username', 'override', 'override_until', 'last_seen')
  local override = u[3]
  if override and u[4] and tonumber(u[4]) > 0 and tonumber(u[4]) <= now then
    redis.call('HDEL', ukey, 'override', 'override_until')
    override = nil
  end
  local want = 'online'
  if live == 0 or override == 'offline' then
    want = 'offline'
  elseif override == 'away' or active == 0 then
    want = 'away'
  end
  local cur = u[1] or 'offline'
  if want == cur then return false end
  local last_seen = now
  if want == 'offline' and live == 0 then
    last_seen = fold_overdue(uid, last or now, ttl, sids, gone)
  end
  redis.call('HSET', ukey, 'online_status', want, 'last_seen', last_seen)
  if want == 'offline' then
    redis.call('SREM', K_ONLINE, uid)
  elseif cur == 'offline' then
    redis.call('SADD', K_ONLINE, uid)
  end
  return want .. '|' .. emit(maxlen, uid, u[2], want, last_seen, reason, now)
end

-- end_session removes one session (record, live key, index entry). The
-- caller applies the user's new status.
local function end_session(uid, sid)
  redis.call('HDEL', k_sessions(uid), sid)
  redis.call('DEL', k_live(uid, sid))
  redis.call('ZREM', K_DEADLINES, uid .. ':' .. sid)
end

-- end_all ends every session of uid, bumps the token version and takes the
-- user offline. Returns what apply returns.
-- last_seen is the latest activity of the sessions (deadline - TTL), not
-- the time of the admin action that ended them.
local function end_all(uid, reason, now, ttl, maxlen)
  local skey = k_sessions(uid)
  local latest = 0
  for _, sid in ipairs(redis.call('HKEYS', skey)) do
    local m = uid .. ':' .. sid
    local score = redis.call('ZSCORE', K_DEADLINES, m)
    if score and tonumber(score) - ttl > latest then latest = tonumber(score) - ttl end
    redis.call('DEL', k_live(uid, sid))
    redis.call('ZREM', K_DEADLINES, m)
  end
  redis.call('DEL', skey)
  redis.call('HINCRBY', k_user(uid), 'tv', 1)
  if latest == 0 or latest > now then latest = now end
  return apply(uid, reason, now, ttl, maxlen, latest)
end

-- active_mark is the mark of a newly active live key: 'm' while the user
-- has a manual override (so the fast path hands over to a script), else ''.
local function active_mark(uid)
  if redis.call('HEXISTS', k_user(uid), 'override') == 1 then return 'm' end
  return ''
end

-- make_live (re)starts a session's TTL and indexes its deadline; mark is ''
-- for an active session, 'i' for one revived by an idle heartbeat.
local function make_live(uid, sid, now, ttl, mark)
  redis.call('SET', k_live(uid, sid), (mark or '') .. now, 'PX', ttl)
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
