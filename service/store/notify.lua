-- Notifications, one atomic step per call: admit an occurrence (dedupe, count, open an
-- incident, apply the cooldown and each channel's rate, record every decision and queue
-- the sends), finish a delivery attempt, or move due retries back to the queue. The
-- prelude (lua/prelude.lua) comes first. Every key is under the {notify} hash tag.
--
-- admit:
--   KEYS[1] seen:<rule>:<occurrence>     (string, TTL: this occurrence was counted)
--   KEYS[2] incident:<rule>:<incident>   (string, TTL: this incident was opened)
--   KEYS[3] count:<rule>:<incident>      (counter of a windowed rule's occurrences)
--   KEYS[4] cooldown:<rule>:<subject>    (the time the rule last told about the subject)
--   KEYS[5] records (zset: record id -> created ms)   KEYS[6] queue (stream)
--   ARGV[1] 'admit'  ARGV[2] record prefix (…:record:)  ARGV[3] rate prefix (…:rate:)
--   ARGV[4] windowed 0|1  ARGV[5] threshold  ARGV[6] window ms  ARGV[7] cooldown ms
--   ARGV[8] the occurrence's time, ms  ARGV[9] seen TTL ms
--   ARGV[10] channels: JSON [[id, rate per minute], ...]
--   ARGV[11] the record's fields (JSON object of strings)  ARGV[12] records kept at most
--   ARGV[13] now ms ('' for the server's clock)
--   Not passed: record:<id> hashes (ARGV[2] .. id) and rate:<channel>:<minute> counters
--   (ARGV[3] .. …), built here under the same hash tag.
--   Returns {'duplicate'} | {'counting', n} | {'open', n} |
--           {'told', n, id, channel, status, reason, ...}
--
-- finish:
--   KEYS[1] record:<id>  KEYS[2] queue  KEYS[3] retries (zset: record id -> due ms)
--   ARGV[1] 'finish'  ARGV[2] queue entry id  ARGV[3] group  ARGV[4] sent|retry|failed
--   ARGV[5] attempt number  ARGV[6] error ('' none)  ARGV[7] due ms (retry)  ARGV[8] now ms
--   ARGV[9] the receiver's HTTP status or SMTP code ('' none)
--   Returns 'done' | 'stale' (an attempt this one does not follow) | 'gone'
--
-- requeue:
--   KEYS[1] retries  KEYS[2] queue   ARGV[1] 'requeue'  ARGV[2] now ms  ARGV[3] at most
--   Returns how many were queued again.
--
-- Guarantees: an occurrence is counted once and an incident opened once, however often
-- the call is repeated (a redelivered event, a retried call); a record only moves
-- forward (a finish of an attempt that is not the next one changes nothing); the ack of
-- the queue entry and the outcome of its attempt are one step.

local action = ARGV[1]

local function record_decision(id, fields, channel, status, reason, now)
  local key = ARGV[2] .. id
  redis.call('HSET', key, 'id', id, 'channel', channel, 'status', status, 'reason', reason,
    'attempts', 0, 'created', now, 'updated', now)
  for name, value in pairs(fields) do redis.call('HSET', key, name, value) end
  redis.call('ZADD', KEYS[5], now, id)
end

local function trim_records(keep)
  local excess = redis.call('ZCARD', KEYS[5]) - keep
  if excess <= 0 then return end
  for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, excess - 1)) do
    redis.call('DEL', ARGV[2] .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, excess - 1)
end

-- the same rules as service/domain/notifications.py: in_cooldown and over_rate
local function in_cooldown(at, cooldown)
  local last = redis.call('GET', KEYS[4])
  return last ~= false and math.abs(at - tonumber(last)) < cooldown
end

local function channel_decision(channel, rate, now)
  local key = ARGV[3] .. channel .. ':' .. math.floor(now / 60000)
  local sent = redis.call('INCR', key)
  if sent == 1 then redis.call('PEXPIRE', key, 120000) end
  if sent > rate then return 'suppressed', 'rate_limited' end
  return 'queued', ''
end

local function admit()
  local ttl = tonumber(ARGV[9])
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ttl) then return {'duplicate'} end
  local count = 1
  if ARGV[4] == '1' then
    count = redis.call('INCR', KEYS[3])
    if count == 1 then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]) * 2) end
    if count <= tonumber(ARGV[5]) then return {'counting', count} end
  end
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then return {'open', count} end
  local at, cooldown = tonumber(ARGV[8]), tonumber(ARGV[7])
  local now = ARGV[13] == '' and now_ms() or tonumber(ARGV[13])
  local cooling = cooldown > 0 and in_cooldown(at, cooldown)
  if cooldown > 0 and not cooling then
    redis.call('SET', KEYS[4], at, 'PX', cooldown * 2)
  end
  local fields = cjson.decode(ARGV[11])
  fields['count'] = tostring(count)
  local out = {'told', count}
  for _, pair in ipairs(cjson.decode(ARGV[10])) do
    local channel = pair[1]
    local id = 'ntf_' .. string.sub(redis.sha1hex(KEYS[2] .. '\31' .. channel), 1, 20)
    local status, reason = 'suppressed', 'cooldown'
    if not cooling then status, reason = channel_decision(channel, tonumber(pair[2]), now) end
    record_decision(id, fields, channel, status, reason, now)
    if status == 'queued' then redis.call('XADD', KEYS[6], '*', 'record', id) end
    for _, v in ipairs({id, channel, status, reason}) do out[#out + 1] = v end
  end
  trim_records(tonumber(ARGV[12]))
  return out
end

local function finish()
  redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
  local state = redis.call('HMGET', KEYS[1], 'status', 'attempts')
  if not state[1] then return 'gone' end
  local attempt = tonumber(ARGV[5])
  if state[1] == 'sent' or state[1] == 'failed' or attempt ~= tonumber(state[2]) + 1 then
    return 'stale'
  end
  local outcome = ARGV[4]
  local status = outcome == 'retry' and 'retrying' or outcome
  redis.call('HSET', KEYS[1], 'status', status, 'attempts', attempt, 'error', ARGV[6],
    'code', ARGV[9], 'updated', ARGV[8])
  if outcome == 'sent' then redis.call('HSET', KEYS[1], 'sent', ARGV[8]) end
  if outcome == 'retry' then
    redis.call('HSET', KEYS[1], 'next_attempt', ARGV[7])
    redis.call('ZADD', KEYS[3], tonumber(ARGV[7]), redis.call('HGET', KEYS[1], 'id'))
  else
    redis.call('HDEL', KEYS[1], 'next_attempt')
  end
  return 'done'
end

local function requeue()
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0,
    tonumber(ARGV[3]))
  for _, id in ipairs(due) do
    redis.call('XADD', KEYS[2], '*', 'record', id)
    redis.call('ZREM', KEYS[1], id)
  end
  return #due
end

if action == 'admit' then return admit() end
if action == 'finish' then return finish() end
if action == 'requeue' then return requeue() end
return redis.error_reply('unknown action ' .. tostring(action))
