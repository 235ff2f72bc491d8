-- A workflow's stored signing secrets: make the first, rotate, revoke one, read the live
-- ones. The prelude (lua/prelude.lua) comes first.
--
-- KEYS[1]  cs:{p}:signing:<workflow id> (hash: secret id ->
--          '<created ms>|<expires ms, 0: never>|<sealed>', the sealed secret being the
--          AES-GCM ciphertext service/store/secrets.py made; this script never sees a secret)
--
-- ARGV[1]  action: create | rotate | revoke | live
-- ARGV[2]  now in epoch ms, or '' for Redis's clock (TIME)
--   create:  ARGV[3] secret id  ARGV[4] sealed  ARGV[5] most live secrets at once
--   rotate:  ARGV[3] secret id  ARGV[4] sealed  ARGV[5] most live secrets at once
--            ARGV[6] grace ms: every other live secret expires by now + grace (0: now)
--   revoke:  ARGV[3] secret id
--   live:    (nothing more)
--
-- create and rotate answer {'made', created ms}, {'exists', created ms} (the id is there:
-- a repeat of the same call, which the client sent again after a lost reply: safe to
-- run twice, it changes nothing), {'live', n} (create, while a secret is live: rotate
-- it instead) or {'full', n} (n secrets live: revoke one first).
-- revoke answers 1, or 0 when no such secret is live. live answers a flat list of
-- id, created ms, expires ms, sealed for each live secret. A secret is live until its
-- expiry; every write first drops the secrets past theirs.

local now = (ARGV[2] == '') and now_ms() or tonumber(ARGV[2])
local action = ARGV[1]

local function parse(value)
  local created, expires, sealed = string.match(value, '^(%d+)|(%d+)|(.*)$')
  return tonumber(created), tonumber(expires), sealed
end

local function is_live(expires)
  return expires == 0 or expires > now
end

-- every live secret as {id, created, expires, sealed}; drops the others when asked
local function live_secrets(drop)
  local found = {}
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local created, expires, sealed = parse(all[i + 1])
    if created and is_live(expires) then
      table.insert(found, {all[i], created, expires, sealed})
    elseif drop then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
  return found
end

local function make(rotating)
  local present = redis.call('HGET', KEYS[1], ARGV[3])
  if present then return {'exists', (parse(present))} end
  local live = live_secrets(true)
  if not rotating and #live > 0 then return {'live', #live} end
  if #live + 1 > tonumber(ARGV[5]) then return {'full', #live} end
  if rotating then
    local until_ms = now + tonumber(ARGV[6])
    for _, s in ipairs(live) do
      if s[3] == 0 or s[3] > until_ms then
        redis.call('HSET', KEYS[1], s[1], s[2] .. '|' .. until_ms .. '|' .. s[4])
      end
    end
  end
  redis.call('HSET', KEYS[1], ARGV[3], now .. '|0|' .. ARGV[4])
  return {'made', now}
end

if action == 'create' then return make(false) end
if action == 'rotate' then return make(true) end
if action == 'revoke' then
  local present = redis.call('HGET', KEYS[1], ARGV[3])
  redis.call('HDEL', KEYS[1], ARGV[3])
  if not present then return 0 end
  local _, expires = parse(present)
  return is_live(expires) and 1 or 0
end
if action == 'live' then
  local flat = {}
  for _, s in ipairs(live_secrets(false)) do
    table.insert(flat, s[1])
    table.insert(flat, s[2])
    table.insert(flat, s[3])
    table.insert(flat, s[4])
  end
  return flat
end
return redis.error_reply('unknown action ' .. tostring(action))
