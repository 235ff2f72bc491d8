-- The live members of a role (the tickers), each scored by its last heartbeat.
--
-- KEYS[1]  cs:{members}:<role>   a sorted set: owner token -> last heartbeat (Redis ms)
-- ARGV[1]  'beat' | 'leave'   ARGV[2] owner token   ARGV[3] TTL ms (beat)
--
-- beat:  record this owner's heartbeat at the server's now, drop every member whose
--        last heartbeat is older than the TTL (a process that died), and return the
--        owner tokens of the live members.
-- leave: remove this owner (a clean stop); returns the live members left.
-- The server's clock judges every member, so the processes' clocks need not agree.

local now = now_ms()
if ARGV[1] == 'beat' then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])))
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
elseif ARGV[1] == 'leave' then
  redis.call('ZREM', KEYS[1], ARGV[2])
else
  return redis.error_reply('unknown membership action ' .. tostring(ARGV[1]))
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
