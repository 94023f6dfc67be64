-- read_users (test reference only): users of one shard with their live presence, in one round trip.
-- KEYS[1]  deadline index of the shard
-- ARGV[1]  shard prefix  ARGV[2] now (ms)  ARGV[3] TTL (ms)  ARGV[4..] user ids
-- Returns one row per id: {} when the user does not exist, else
-- {user hash as a flat array, latest activity of a live session (ms) or -1, live session count}.
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV do
  local uid = ARGV[i]
  local h = redis.call('HGETALL', k_user(uid))
  if #h == 0 then
    out[#out + 1] = {}
  else
    local latest, n = -1, 0
    for _, sid in ipairs(redis.call('HKEYS', k_sessions(uid))) do
      local score = redis.call('ZSCORE', K_DEADLINES, uid .. ':' .. sid)
      if score and tonumber(score) > now then
        n = n + 1
        local last = tonumber(score) - ttl
        if last > latest then latest = last end
      end
    end
    out[#out + 1] = {h, latest, n}
  end
end
return out
