-- Append events of one aggregate, atomically and at most once.
--
-- KEYS[1]  the partition's log stream          cs:{p}:log
-- KEYS[2]  the aggregate's write-model hash    cs:{p}:state:<kind>:<id>
-- KEYS[3]  the idempotency record              cs:{p}:idem:<key>
-- KEYS[4]  the aggregate's event index (list)  cs:{p}:events:<kind>:<id>
-- KEYS[5]  the partition's due index (zset)     cs:{p}:due
-- KEYS[6]  the partition's high-water marks     cs:{p}:hwm
-- KEYS[7]  the head of the log's hash chain     cs:{p}:log:chain
-- KEYS[8]  the channel a due schedule is announced on (pub/sub)  cs:{p}:due:wake
-- ARGV[1]  expected version (-1: any)
-- ARGV[2]  request fingerprint (same key, other request -> REUSED)
-- ARGV[3]  idempotency record TTL in ms
-- ARGV[4]  the write-model snapshot after the events (JSON)
-- ARGV[5]  aggregate id (the envelope's sid)
-- ARGV[6]  due index change: '' (none), 'reset' (the ticker looks again now, and
--          nothing at or before now fires: high-water mark = max(mark, now)), 'drop'
-- ARGV[7]  the aggregate's status after the events (kept beside the snapshot so the
--          fire script can check it without decoding JSON)
-- ARGV[8]  now in epoch ms, or '' for Redis's clock (TIME)
-- ARGV[9]  number of events n; then per event: type, v, data, meta
--
-- Returns {'OK', version, ids} | {'DUP', version, ids} | {'CONFLICT', version} | {'REUSED'}.
--
-- Guarantees: the version check, the events, the snapshot, the index and the
-- idempotency record change together or not at all. Every call carries an
-- idempotency key (the client's, or one made per call), so a call that redis-py
-- retries after a timeout finds its own record and appends nothing twice.

local record_fp = redis.call('HGET', KEYS[3], 'fp')
if record_fp then
  if record_fp ~= ARGV[2] then
    return {'REUSED'}
  end
  return {'DUP', redis.call('HGET', KEYS[3], 'version'), redis.call('HGET', KEYS[3], 'ids')}
end

local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
local expected = tonumber(ARGV[1])
if expected >= 0 and current ~= expected then
  return {'CONFLICT', tostring(current)}
end

local n = tonumber(ARGV[9])
local ids = {}
for i = 0, n - 1 do
  local base = 10 + i * 4
  ids[#ids + 1] = chain_append(KEYS[1], KEYS[7], KEYS[4], ARGV[base], ARGV[base + 1], ARGV[5],
    ARGV[base + 2], ARGV[base + 3])
end

local version = current + n
local joined = table.concat(ids, ',')
redis.call('HSET', KEYS[2], 'version', version, 'state', ARGV[4], 'status', ARGV[7])
-- the trace of the command that last changed the aggregate (a fire links to it)
local traceparent = cjson.decode(ARGV[10 + (n - 1) * 4 + 3]).traceparent
if type(traceparent) == 'string' then
  redis.call('HSET', KEYS[2], 'traceparent', traceparent)
end
if ARGV[6] == 'reset' then
  local now = (ARGV[8] == '') and now_ms() or tonumber(ARGV[8])
  local mark = tonumber(redis.call('HGET', KEYS[6], ARGV[5]) or '0')
  if now > mark then
    redis.call('HSET', KEYS[6], ARGV[5], now)
  end
  redis.call('ZADD', KEYS[5], now, ARGV[5])
  redis.call('PUBLISH', KEYS[8], ARGV[5])  -- a sleeping ticker looks now
elseif ARGV[6] == 'drop' then
  redis.call('ZREM', KEYS[5], ARGV[5])
end
redis.call('HSET', KEYS[3], 'fp', ARGV[2], 'version', version, 'ids', joined)
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {'OK', tostring(version), joined}
