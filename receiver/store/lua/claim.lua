-- Claim incidents whose decision is due, so that exactly one replica acts on each.
--
-- KEYS: 1 the due set, 2 the claims hash (incident id -> "<token>|<held until, ms>").
-- ARGV: now (ms), lease (ms), limit, claim token.
-- A claimed incident's due time moves to now + lease: if this replica dies, another one
-- picks it up when the lease runs out. An incident another replica still holds is not
-- taken from it (a batch may have made it due again meanwhile; the holder's commit sees
-- that and puts it due again): it is looked at when that lease ends. Claims live in their
-- own hash, not in the incident, so that every key this script touches is one it was
-- given (Redis Cluster); an incident that expired meanwhile is claimed all the same and
-- let go by the scheduler, which finds nothing to load (release.lua without a due time).
-- Returns {id, due ms} pairs, flattened.

local now = tonumber(ARGV[1])
local until_ms = now + tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                      tonumber(ARGV[3]))
local claimed = {}
for i = 1, #due, 2 do
  local id = due[i]
  local held = redis.call('HGET', KEYS[2], id)
  local held_until = held and tonumber(string.match(held, '|(%d+)$')) or 0
  if held_until > now then
    redis.call('ZADD', KEYS[1], held_until, id)
  else
    redis.call('ZADD', KEYS[1], until_ms, id)
    redis.call('HSET', KEYS[2], id, ARGV[4] .. '|' .. string.format('%d', until_ms))
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = due[i + 1]
  end
end
return claimed
