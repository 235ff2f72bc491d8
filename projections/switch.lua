-- Switch a partition's views to the shadow build, atomically (blue/green).
--
-- KEYS[1]  the live projection checkpoint     cs:{p}:proj:views
-- KEYS[2]  the shadow projection checkpoint   cs:{p}:proj:views-shadow
-- ARGV[1]  SCAN pattern of the live view keys    cs:{p}:view:*
-- ARGV[2]  SCAN pattern of the shadow view keys  cs:{p}:shadow:*
-- ARGV[3]  the live view key prefix              cs:{p}:view:
-- ARGV[4]  the shadow view key prefix            cs:{p}:shadow:
--
-- Drops every live view key, renames every shadow key to its live name and the
-- shadow checkpoint to the live one, in one script: readers see the old views or
-- the new ones, never a mix. A live projector whose batch was computed from the
-- old checkpoint finds it moved (apply.lua refuses the batch) and carries on from
-- the shadow's checkpoint. All keys share the partition's hash tag.
-- Returns {live keys dropped, shadow keys moved}.

local function collect(pattern)
  local names = {}
  local cursor = '0'
  repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = reply[1]
    for i = 1, #reply[2] do
      names[reply[2][i]] = true  -- a set: SCAN may return a key twice
    end
  until cursor == '0'
  return names
end

local dropped = 0
for name in pairs(collect(ARGV[1])) do
  dropped = dropped + redis.call('DEL', name)
end
local moved = 0
local skip = #ARGV[4]
for name in pairs(collect(ARGV[2])) do
  redis.call('RENAME', name, ARGV[3] .. string.sub(name, skip + 1))
  moved = moved + 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[1])
else
  redis.call('DEL', KEYS[1])
end
return {dropped, moved}
