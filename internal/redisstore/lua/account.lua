-- account: changes to a whole account. One script with a mode so that ending
-- every session is written once.
-- KEYS[1]  user hash
-- ARGV[1]  shard prefix  ARGV[2] mode: "end_all" | "update" | "delete"
-- ARGV[3]  user id  ARGV[4] now (ms)  ARGV[5] stream maxlen  ARGV[6] reason
-- ARGV[7..] ("update" only) user hash field/value pairs; an empty value deletes the field.
-- Returns {"notfound"} or {"ok", stream id or "", user hash as a flat array (not for delete)}.
local mode, uid, now, maxlen, reason = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ukey = k_user(uid)
local status = redis.call('HGET', ukey, 'status')
if not status then return {'notfound'} end
local ev = false
if mode == 'end_all' then
  ev = end_all(uid, reason, now, maxlen)
elseif mode == 'update' then
  for i = 7, #ARGV, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', ukey, ARGV[i])
    else
      redis.call('HSET', ukey, ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('HSET', ukey, 'updated_at', now)
  local new = redis.call('HGET', ukey, 'status')
  if new ~= 'active' and new ~= status then ev = end_all(uid, reason, now, maxlen) end
elseif mode == 'delete' then
  ev = end_all(uid, reason, now, maxlen)
  local name = redis.call('HGET', ukey, 'username')
  if name then redis.call('HDEL', K_NAMES, string.lower(name)) end
  redis.call('DEL', ukey, k_cred(uid))
  return {'ok', ev or ''}
else
  return redis.error_reply('account: unknown mode ' .. tostring(mode))
end
return {'ok', ev or '', redis.call('HGETALL', ukey)}
