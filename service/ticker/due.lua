-- What is due on a partition now: one round trip for the ticker's read side.
--
-- KEYS[1]  cs:{p}:due (zset: schedule id -> due ms)   KEYS[2]  cs:{p}:hwm (hash)
-- ARGV[1]  now in ms, or '' for Redis's clock
-- ARGV[2]  batch size
-- ARGV[3]  prefix of the schedules' state hashes, cs:{p}:state:schedule:
--
-- Returns {now, earliest due ms or -1, then per due schedule: id, version, status,
-- actions, high-water mark}. Not passed: the state hashes of the due schedules, found
-- here (built from ARGV[3]; they share the partition's hash tag, so the slot of
-- KEYS[1]). Reads only: the fire script re-checks all.

local now = ARGV[1]
if now == '' then now = tostring(now_ms()) end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local out = {now, first[2] or '-1'}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, sid in ipairs(due) do
  local state = redis.call('HMGET', ARGV[3] .. sid, 'version', 'status', 'actions')
  out[#out + 1] = sid
  out[#out + 1] = state[1] or '0'
  out[#out + 1] = state[2] or ''
  out[#out + 1] = state[3] or '0'
  out[#out + 1] = redis.call('HGET', KEYS[2], sid) or '0'
end
return out
