-- API tokens: admit a request (and take it from the token's rate bucket), create a
-- token, revoke one. The prelude (lua/prelude.lua) comes first.
--
-- KEYS[1]  cs:{auth}:token:<id> (hash: hash, name, scopes (a,b), namespaces (JSON),
--          limit, window_ms, created_ms, expires_ms (0: never), revoked_ms, used_ms,
--          and the rate bucket: level (requests left, a fraction), level_ms (when))
-- KEYS[2]  cs:{auth}:tokens (zset: token id -> created ms; the listing)
--
-- ARGV[1]  action   ARGV[2] the token's SHA-256 in hex ('' for revoke)
-- ARGV[3]  now in epoch ms, or '' for Redis's clock (TIME)
--   admit:   ARGV[4] permits wanted (default 1)  ARGV[5] permits given back (default 0)
--   create:  ARGV[4] token id  ARGV[5] name  ARGV[6] scopes (a,b)  ARGV[7] namespaces (JSON)
--            ARGV[8] limit  ARGV[9] window ms  ARGV[10] lifetime ms (0: never expires)
--            ARGV[11] 'first': only when no token exists yet (serve's generated token)
--   revoke:  (nothing more)
--
-- admit answers {'unknown'} (no such token, or another token's hash), {'revoked'},
-- {'expired'} (at expires_ms exactly, as TokenRecord.status says), or {'allowed' |
-- 'limited', scopes, limit, window_ms, the bucket's level before the take (a fraction,
-- as text), permits granted, expires_ms}. The bucket holds `limit` requests and gains
-- limit/window per ms. An admission takes up to the permits wanted, never more than
-- the bucket holds ('limited': it holds less than one, and nothing is taken): an API
-- process leases a few and spends them itself (service/store/tokens.py), giving back
-- those it did not spend in time. Given-back permits refill the bucket up to `limit`.
-- Every API process shares the bucket: the state is here, and the time is Redis's
-- unless a test passes one.
-- create answers {'created' | 'exists', created_ms, expires_ms, revoked_ms (0: not)} or
-- {'skipped'} ('first' and tokens exist). A token's id comes from its hash, so a repeat
-- of a create (the client retried a lost reply) answers 'exists' for the same token:
-- safe to run twice. An admit run twice takes its permits twice (and gives back twice:
-- at most one lease too many), at worst.

local now = (ARGV[3] == '') and now_ms() or tonumber(ARGV[3])
local action = ARGV[1]

local function admit()
  local r = redis.call('HMGET', KEYS[1], 'hash', 'scopes', 'limit', 'window_ms',
    'expires_ms', 'revoked_ms', 'level', 'level_ms')
  if not r[1] or r[1] ~= ARGV[2] then return {'unknown'} end
  if r[6] then return {'revoked'} end
  local expires = tonumber(r[5]) or 0
  if expires > 0 and now >= expires then return {'expired'} end
  local limit, window = tonumber(r[3]), tonumber(r[4])
  local level = tonumber(r[7]) or limit
  local last = tonumber(r[8]) or now
  local back = math.max(0, tonumber(ARGV[5]) or 0)
  level = math.min(limit, level + math.max(0, now - last) * limit / window + back)
  local want = math.max(1, tonumber(ARGV[4]) or 1)
  local granted = math.max(0, math.min(want, math.floor(level)))
  redis.call('HSET', KEYS[1], 'level', string.format('%.17g', level - granted),
    'level_ms', math.max(now, last), 'used_ms', now)
  local verdict = 'limited'
  if granted > 0 then verdict = 'allowed' end
  return {verdict, r[2], limit, window, string.format('%.17g', level), granted, expires}
end

local function create()
  if redis.call('EXISTS', KEYS[1]) == 1 then
    local r = redis.call('HMGET', KEYS[1], 'hash', 'created_ms', 'expires_ms', 'revoked_ms')
    if r[1] ~= ARGV[2] then return redis.error_reply('token id collision') end
    return {'exists', tonumber(r[2]), tonumber(r[3]), tonumber(r[4]) or 0}
  end
  if ARGV[11] == 'first' and redis.call('ZCARD', KEYS[2]) > 0 then return {'skipped'} end
  local lifetime = tonumber(ARGV[10])
  local expires = 0
  if lifetime > 0 then expires = now + lifetime end
  redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'name', ARGV[5], 'scopes', ARGV[6],
    'namespaces', ARGV[7], 'limit', ARGV[8], 'window_ms', ARGV[9], 'created_ms', now,
    'expires_ms', expires)
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  return {'created', now, expires, 0}
end

local function revoke()
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
  local revoked = redis.call('HGET', KEYS[1], 'revoked_ms')
  if revoked then return {'already', tonumber(revoked)} end
  redis.call('HSET', KEYS[1], 'revoked_ms', now)
  return {'revoked', now}
end

if action == 'admit' then return admit() end
if action == 'create' then return create() end
if action == 'revoke' then return revoke() end
return redis.error_reply('unknown action ' .. tostring(action))
