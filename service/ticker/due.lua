-- What is due on a partition now: one round trip for the ticker's read side.
--
-- KEYS[1]  cs:{p}:due (zset: schedule id -> due ms)   KEYS[2]  cs:{p}:hwm (hash)
-- ARGV[1]  now in ms, or '' for Redis's clock
-- ARGV[2]  batch size
-- ARGV[3]  prefix of the schedules' state hashes, cs:{p}:state:schedule:
-- ARGV[4], ARGV[5]  the last due ms and schedule id of the batch read before, still being
--          fired ('' for none): this batch starts strictly after it in the index, so two
--          batches in flight never hold the same schedule. When that schedule has moved
--          (its batch was fired meanwhile), the batch starts at the front again.
--
-- Returns {now, earliest due ms or -1, the last due ms of this batch or '', then per due
-- schedule: id, version, status, actions, high-water mark}. Not passed: the state hashes
-- of the due schedules, found here (built from ARGV[3]; they share the partition's hash
-- tag, so the slot of KEYS[1]). Reads only: the fire script re-checks all.

local now = ARGV[1]
if now == '' then now = tostring(now_ms()) end
local size = tonumber(ARGV[2])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local rows
if ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[5]) == ARGV[4] then
  local rank = redis.call('ZRANK', KEYS[1], ARGV[5])
  rows = redis.call('ZRANGE', KEYS[1], rank + 1, rank + size, 'WITHSCORES')
else
  rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, size)
end
local out = {now, first[2] or '-1', ''}
local limit = tonumber(now)
for i = 1, #rows, 2 do
  local sid, score = rows[i], rows[i + 1]
  if tonumber(score) > limit then break end
  local state = redis.call('HMGET', ARGV[3] .. sid, 'version', 'status', 'actions')
  out[3] = score
  out[#out + 1] = sid
  out[#out + 1] = state[1] or '0'
  out[#out + 1] = state[2] or ''
  out[#out + 1] = state[3] or '0'
  out[#out + 1] = redis.call('HGET', KEYS[2], sid) or '0'
end
return out
