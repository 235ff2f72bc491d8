-- Take or release a projection's hold (cs:{p}:hold:<projection>).
--
-- KEYS[1]  the hold key
-- ARGV[1]  'take' or 'release'
-- ARGV[2]  the holder's token
-- ARGV[3]  the hold's time to live in ms (take)
--
-- While held, apply.lua applies nothing to the projection, so a rebuild can
-- rewrite its views in bounded batches (switch.lua, reset.lua; each batch renews
-- the hold). The TTL frees a projection whose rebuild died. 'take' returns 1, or
-- 0 when someone else holds it; 'release' deletes the hold only if it is ours.

if ARGV[1] == 'take' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
    return 1
  end
  return 0
end
if redis.call('GET', KEYS[1]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
