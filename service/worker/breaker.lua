-- A circuit breaker for one target host, shared by every worker.
--
-- KEYS[1]  cs:{breaker}:host:<host>  hash: state, failures, opened_at, probe_at
-- KEYS[2]  cs:{breaker}:hosts        zset: host -> last time an outcome was recorded
-- ARGV[1]  'allow' | 'success' | 'failure'
-- ARGV[2]  now in epoch ms, or '' to use the Redis server's TIME
-- ARGV[3]  threshold: consecutive failures that open the breaker
-- ARGV[4]  cooldown ms: how long an open breaker fails fast before one probe
-- ARGV[5]  probe timeout ms: a probe that has not reported by then is presumed
--          lost (its worker died) and another caller may probe
-- ARGV[6]  the host (member of KEYS[2])
--
-- allow:   returns 1 to let an attempt through, 0 to fail it fast.
--          closed -> 1 (read only). open, cool-down not over -> 0.
--          open, cool-down over -> half_open, 1: exactly one caller, the one that
--          moved it, probes. half_open -> 0 until the probe reports (or is lost).
-- success: -> closed, failures 0. Returns 1.
-- failure: failures + 1; closed reaching the threshold -> open at now; a failed
--          probe (half_open) -> open again at now. Returns 1 if the breaker is
--          open afterwards, else 0.
-- Each call is one atomic step, so concurrent workers see one state machine.

local key, hosts = KEYS[1], KEYS[2]
local action, host = ARGV[1], ARGV[6]
local now = tonumber(ARGV[2]) or now_ms()
local threshold = tonumber(ARGV[3])
local cooldown = tonumber(ARGV[4])
local probe_timeout = tonumber(ARGV[5])

local state = redis.call('HGET', key, 'state') or 'closed'

if action == 'allow' then
  if state == 'closed' then
    return 1
  end
  if state == 'open' then
    local opened_at = tonumber(redis.call('HGET', key, 'opened_at')) or 0
    if now - opened_at < cooldown then
      return 0
    end
  else -- half_open: one probe is out
    local probe_at = tonumber(redis.call('HGET', key, 'probe_at')) or 0
    if now - probe_at < probe_timeout then
      return 0
    end
  end
  redis.call('HSET', key, 'state', 'half_open', 'probe_at', now)
  return 1
elseif action == 'success' then
  redis.call('ZADD', hosts, now, host)
  if state == 'closed' and (tonumber(redis.call('HGET', key, 'failures')) or 0) == 0 then
    return 1
  end
  redis.call('HSET', key, 'state', 'closed', 'failures', 0)
  redis.call('HDEL', key, 'opened_at', 'probe_at')
  return 1
elseif action == 'failure' then
  redis.call('ZADD', hosts, now, host)
  local failures = redis.call('HINCRBY', key, 'failures', 1)
  if state == 'half_open' or (state == 'closed' and failures >= threshold) then
    redis.call('HSET', key, 'state', 'open', 'opened_at', now)
    redis.call('HDEL', key, 'probe_at')
    return 1
  end
  if state == 'closed' then
    redis.call('HSET', key, 'state', 'closed')
    return 0
  end
  return 1 -- already open: a late failure of an attempt let through before it opened
end
return redis.error_reply('unknown breaker action ' .. tostring(action))
