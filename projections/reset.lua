-- Drop a projection's views and checkpoint in one step (for a rebuild).
--
-- KEYS[1]  the projection checkpoint hash
-- ARGV[1]  SCAN pattern matching the view keys of the partition (cs:{p}:view:*)
--
-- Runs as one script so a live projector never sees half-dropped views: its next
-- batch finds the checkpoint gone and starts again from the beginning of the log.
-- Returns the number of view keys dropped.

local cursor = '0'
local dropped = 0
repeat
  local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = reply[1]
  local found = reply[2]
  for i = 1, #found do
    redis.call('DEL', found[i])
    dropped = dropped + 1
  end
until cursor == '0'
redis.call('DEL', KEYS[1])
return dropped
