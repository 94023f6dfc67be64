-- idle: one slice of the scan that finds live sessions without activity for
-- PRESENCE_AWAY_AFTER, marks them idle and makes users whose every live
-- session is idle away (and clears manual overrides whose time is up). It walks the deadline index (every live session is
-- in it) with ZSCAN from a cursor kept in Redis, so several replicas share one
-- pass, and no per-session activity index is needed: the activity time is the
-- live key's value. The slice size makes a full pass take about one period.
-- KEYS[1]  deadline index of the shard
-- ARGV[1]  shard prefix  ARGV[2] now (ms)  ARGV[3] TTL (ms)  ARGV[4] stream maxlen
-- ARGV[5]  away after (ms)  ARGV[6] pass period (ms)  ARGV[7] interval between calls (ms)
-- Returns {sessions examined, {transition...} with reason idle, {transition...} with reason manual},
-- a transition being "<status>|<stream id>".
local now, ttl, maxlen = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local away, period, interval = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local total = redis.call('ZCARD', K_DEADLINES)
local count = math.max(64, math.ceil(total * interval / period))
local cursor = redis.call('GET', K_IDLESCAN) or '0'
local res = redis.call('ZSCAN', K_DEADLINES, cursor, 'COUNT', count)
redis.call('SET', K_IDLESCAN, res[1])
local pairs_ = res[2]
local idle, manual = {}, {}
for i = 1, #pairs_, 2 do
  local uid, sid = string.match(pairs_[i], '^(%d+):(.+)$')
  if uid then
    local lkey = k_live(uid, sid)
    local kind, ms = parse_live(redis.call('GET', lkey))
    if ms and kind ~= 'i' and ms + away <= now then
      redis.call('SET', lkey, 'i' .. ms, 'KEEPTTL')
      local ev = apply(uid, 'idle', now, ttl, maxlen, now)
      if ev then idle[#idle + 1] = ev end
    elseif kind ~= '' then
      -- A marked key of a user with a manual override: re-applying lets one
      -- whose "until" has passed clear itself without an active heartbeat.
      local untl = tonumber(redis.call('HGET', k_user(uid), 'override_until') or '0')
      if untl and untl > 0 and untl <= now then
        local ev = apply(uid, 'manual', now, ttl, maxlen, now)
        if ev then manual[#manual + 1] = ev end
      end
    end
  end
end
return {#pairs_ / 2, idle, manual}
