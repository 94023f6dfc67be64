-- cluster_guard.lua: prepended (after lib.lua) to every script when the
-- client is a Redis Cluster client; on a single server there is nothing to
-- guard against and scripts run without it.
--
-- Refuse to run while the shard's slot is being migrated
-- (redis-cli --cluster reshard). Redis would start the script and fail it at
-- the first key that has already moved, leaving the writes before that key
-- done: half a transition. A key that does not exist counts as moved in a
-- migrating slot (and, on the importing node, a command on two absent keys
-- is refused), so this EXISTS fails on either node of a migration and on no
-- other; pcall turns that into an error here, before any write, and TRYAGAIN
-- makes the client retry until the slot has moved. The probe keys are never
-- written.
do
  local probe = redis.pcall('EXISTS', P .. 'probe:a', P .. 'probe:b')
  if type(probe) == 'table' and probe.err then
    return redis.error_reply('TRYAGAIN slot of ' .. P .. ' is being migrated')
  end
end
