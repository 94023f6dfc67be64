-- login_limit: take one login attempt from a sliding-window limit, or say how
-- long until one is free. The window is a log of attempts (a sorted set scored
-- by the attempt's time), so it slides exactly: an attempt counts for exactly
-- one window after it was made. A refused attempt is not logged, so hammering
-- a full window does not make it last longer: the limit lifts at most one
-- window after the last attempt that was let through.
-- KEYS[1]  the limit's attempt log (one per username or client address)
-- ARGV[1]  the log's tag (keys.go loginTag), lib.lua's prefix  ARGV[2] now (ms)
-- ARGV[3]  window (ms)  ARGV[4] attempts allowed per window  ARGV[5] attempt id
-- Returns 0 when the attempt was logged, else the ms until one is allowed.
local key, now, window, max = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= max then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, ARGV[5])
redis.call('PEXPIRE', key, window)
return 0
