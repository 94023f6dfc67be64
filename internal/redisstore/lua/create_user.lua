-- create_user: allocate an ID and store a new user, unless the username is taken.
-- KEYS[1]  names index of the username's shard
-- ARGV[1]  shard prefix      ARGV[2]  normalised username  ARGV[3] shard count
-- ARGV[4]  shard number      ARGV[5]  now (ms)             ARGV[6] password hash
-- ARGV[7..] user hash field/value pairs (username, email, names, role, status)
-- Returns {"taken"} or {"ok", id}.
if redis.call('HEXISTS', K_NAMES, ARGV[2]) == 1 then return {'taken'} end
local id = redis.call('INCR', K_SEQ) * tonumber(ARGV[3]) + tonumber(ARGV[4])
local uid = tostring(id)
redis.call('HSET', K_NAMES, ARGV[2], uid)
local ukey = k_user(uid)
redis.call('HSET', ukey, 'id', uid, 'online_status', 'offline', 'created_at', ARGV[5],
  'updated_at', ARGV[5], 'tv', 0, 'sq', 0)
for i = 7, #ARGV, 2 do
  if ARGV[i + 1] ~= '' then redis.call('HSET', ukey, ARGV[i], ARGV[i + 1]) end
end
redis.call('SET', k_cred(uid), ARGV[6])
return {'ok', id}
