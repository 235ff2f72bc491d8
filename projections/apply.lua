-- Apply one batch of view changes and move the projection's checkpoint, atomically.
--
-- KEYS[1]      the projection checkpoint hash   cs:{p}:proj:<name>
-- KEYS[2]      the projection's hold            cs:{p}:hold:<name>
-- KEYS[3..]    the view keys the operations touch (same partition)
-- ARGV[1]      the checkpoint the batch was computed from ('' for none)
-- ARGV[2]      the checkpoint after the batch (last applied log position)
-- ARGV[3..]    per key KEYS[i+2]: an operation code and its argument:
--              S value (SET), D - (DEL), A member (ZADD 0), R member (ZREM)
--
-- Returns 1 when applied, 0 when the checkpoint moved meanwhile (another
-- projector applied these events), -1 while a rebuild holds the projection (it
-- is rewriting the views in batches, see switch.lua and reset.lua): in both
-- cases nothing is changed, so a batch applies once and never into a half switch.

if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local checkpoint = redis.call('HGET', KEYS[1], 'position') or ''
if checkpoint ~= ARGV[1] then
  return 0
end
for i = 3, #KEYS do
  local op = ARGV[(i - 3) * 2 + 3]
  local arg = ARGV[(i - 3) * 2 + 4]
  if op == 'S' then
    redis.call('SET', KEYS[i], arg)
  elseif op == 'D' then
    redis.call('DEL', KEYS[i])
  elseif op == 'A' then
    redis.call('ZADD', KEYS[i], 0, arg)
  elseif op == 'R' then
    redis.call('ZREM', KEYS[i], arg)
  end
end
redis.call('HSET', KEYS[1], 'position', ARGV[2])
return 1
