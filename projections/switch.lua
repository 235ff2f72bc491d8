-- Switch one batch of a held projection's views to the shadow build, or finish.
--
-- KEYS[1]   the live projection's hold        cs:{p}:hold:views
-- KEYS[2]   the live projection checkpoint    cs:{p}:proj:views
-- KEYS[3]   the shadow projection checkpoint  cs:{p}:proj:views-shadow
-- KEYS[4..] pairs of one view's names: live key, shadow key (the caller found them
--           with SCAN and sends at most its batch size: no call runs long)
-- ARGV[1]   the hold's token (hold.lua)
-- ARGV[2]   the hold's time to live in ms, renewed by every call
-- ARGV[3]   'orphans': delete each live key whose shadow key does not exist
--           'rename':  rename each existing shadow key to its live name
--           'finish':  rename the shadow checkpoint to the live one (or delete
--                      the live one when the shadow has none) and release the hold
--
-- The caller runs every 'orphans' batch, then every 'rename' batch, then
-- 'finish'. The live projector applies nothing meanwhile (apply.lua), then
-- carries on from the shadow's checkpoint. Readers may see a view switched
-- while another is not yet; each key is old or new, never a mix of both.
-- Returns the number of keys deleted or renamed, or -1 when the hold is no longer
-- ours (it expired): nothing is changed then.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if ARGV[3] == 'finish' then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('RENAME', KEYS[3], KEYS[2])
  else
    redis.call('DEL', KEYS[2])
  end
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local changed = 0
for i = 4, #KEYS - 1, 2 do
  local live, shadow = KEYS[i], KEYS[i + 1]
  if ARGV[3] == 'orphans' then
    if redis.call('EXISTS', shadow) == 0 then
      changed = changed + redis.call('DEL', live)
    end
  elseif redis.call('EXISTS', shadow) == 1 then
    redis.call('RENAME', shadow, live)
    changed = changed + 1
  end
end
return changed
