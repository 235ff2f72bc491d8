-- Leases of one partition (the ticker's, or another role's), with a fencing epoch.
--
-- KEYS[1]  cs:{p}:lease[:role]   KEYS[2]  cs:{p}:epoch[:role]
-- KEYS[3]  (the ticker's only) the partition's wake channel (pub/sub) cs:{p}:due:wake,
--          told of a release
-- ARGV[1]  'acquire' | 'renew' | 'release'   ARGV[2] owner token   ARGV[3] TTL ms
--
-- acquire: if nobody holds the lease, take it (SET NX PX) and increment the epoch;
--          returns the new epoch, or 0 if another owner holds it.
-- renew:   extend the lease if this owner still holds it; returns the epoch or 0.
-- release: drop the lease if this owner holds it, and say so on the wake channel, so
--          a ticker below its share takes it at once (not at its next look); 1 or 0.
-- Every fire script checks owner and epoch, so a holder that lost its lease
-- (expired, taken over) cannot append, whatever its own clock believes.

local action = ARGV[1]
if action == 'acquire' then
  if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
    return redis.call('INCR', KEYS[2])
  end
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return tonumber(redis.call('GET', KEYS[2]))
  end
  return 0
elseif action == 'renew' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return tonumber(redis.call('GET', KEYS[2]))
  end
  return 0
elseif action == 'release' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then
    redis.call('DEL', KEYS[1])
    if KEYS[3] then
      redis.call('PUBLISH', KEYS[3], 'released')
    end
    return 1
  end
  return 0
end
return redis.error_reply('unknown lease action ' .. tostring(action))
