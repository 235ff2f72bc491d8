-- Drop one batch of a held projection's view keys, or finish the reset.
--
-- KEYS[1]   the projection's hold           cs:{p}:hold:<projection>
-- KEYS[2]   the projection checkpoint hash  cs:{p}:proj:<projection>
-- KEYS[3..] the view keys of this batch (the caller found them with SCAN, and
--           sends at most its batch size: no call runs long)
-- ARGV[1]   the hold's token (hold.lua)
-- ARGV[2]   the hold's time to live in ms, renewed by every call
-- ARGV[3]   'drop': delete KEYS[3..]
--           'finish': delete the checkpoint and release the hold, so projectors
--           start again from the beginning of the log onto the emptied views
--
-- A projector applies nothing while the hold is taken (apply.lua), so it never
-- writes into half-dropped views. Returns the number of keys deleted, or -1 when
-- the hold is no longer ours (it expired): nothing is changed then.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if ARGV[3] == 'finish' then
  redis.call('DEL', KEYS[2])
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local dropped = 0
for i = 3, #KEYS do
  dropped = dropped + redis.call('DEL', KEYS[i])
end
return dropped
