-- The keyspace migration lock: renew, release, and record a version while holding it.
--
-- KEYS[1]  the lock                {cs:meta}:lock  (a string holding the owner's token)
-- KEYS[2]  the keyspace meta hash  cs:meta        (only for 'stamp')
-- ARGV[1]  'renew' | 'release' | 'stamp'
-- ARGV[2]  the owner's token
-- ARGV[3]  renew: the lock's new TTL in ms;  stamp: the version to record
--
-- Every operation first checks that the lock still holds this token, so a migrate
-- whose lock expired (a long stall) can neither extend nor free another's lock, nor
-- record a version. Returns 1 when done, 0 when the lock is not (or no longer) ours.
-- (cs:meta and its lock are keyspace-wide keys without a hash tag: one Redis, or
-- one slot's node on a Cluster holding both, is assumed.)

if redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
if ARGV[1] == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif ARGV[1] == 'release' then
  redis.call('DEL', KEYS[1])
elseif ARGV[1] == 'stamp' then
  redis.call('HSET', KEYS[2], 'version', ARGV[3])
end
return 1
