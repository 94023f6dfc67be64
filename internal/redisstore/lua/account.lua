-- account: changes to a whole account. One script with a mode so that ending
-- every session is written once.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] mode: "end_all" | "update" | "delete" | "override"
-- ARGV[3]  user id  ARGV[4] now (ms)  ARGV[5] stream maxlen  ARGV[6] reason  ARGV[7] TTL (ms)
-- ARGV[8..] "update": user hash field/value pairs; an empty value deletes the field.
--           "override": ARGV[8] status online|away|offline (online clears the
--           override), ARGV[9] until (ms, 0 = no expiry).
-- Returns {"notfound"} or {"ok", stream id or "", user hash as a flat array (not for delete)}.
local mode, uid, now, maxlen, reason = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ttl = tonumber(ARGV[7])
local ukey = k_user(uid)
local status = redis.call('HGET', ukey, 'status')
if not status then return {'notfound'} end
local ev = false
if mode == 'end_all' then
  ev = end_all(uid, reason, now, ttl, maxlen)
elseif mode == 'update' then
  for i = 8, #ARGV, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', ukey, ARGV[i])
    else
      redis.call('HSET', ukey, ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('HSET', ukey, 'updated_at', now)
  local new = redis.call('HGET', ukey, 'status')
  if new ~= 'active' and new ~= status then ev = end_all(uid, reason, now, ttl, maxlen) end
elseif mode == 'override' then
  if ARGV[8] == 'online' then
    redis.call('HDEL', ukey, 'override', 'override_until')
  else
    redis.call('HSET', ukey, 'override', ARGV[8], 'override_until', ARGV[9])
    -- Mark the active live keys so the heartbeat fast path hands over to
    -- activate.lua, which reports and re-applies the override.
    for _, sid in ipairs(redis.call('HKEYS', k_sessions(uid))) do
      local lkey = k_live(uid, sid)
      local kind, ms = parse_live(redis.call('GET', lkey))
      if kind == '' then redis.call('SET', lkey, 'm' .. ms, 'KEEPTTL') end
    end
  end
  ev = apply(uid, reason, now, ttl, maxlen, now)
elseif mode == 'delete' then
  ev = end_all(uid, reason, now, ttl, maxlen)
  local name = redis.call('HGET', ukey, 'username')
  if name then redis.call('HDEL', K_NAMES, string.lower(name)) end
  redis.call('DEL', ukey, k_cred(uid))
  return {'ok', ev or ''}
else
  return redis.error_reply('account: unknown mode ' .. tostring(mode))
end
return {'ok', ev or '', redis.call('HGETALL', ukey)}
