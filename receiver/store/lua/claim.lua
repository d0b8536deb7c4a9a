-- Claim incidents whose decision is due, so that exactly one replica acts on each.
--
-- KEYS[1] the due set.  ARGV: prefix, now (ms), lease (ms), limit, claim token.
-- A claimed incident's due time moves to now + lease: if this replica dies, another one
-- picks it up when the lease runs out. An incident another replica still holds is not
-- taken from it (a batch may have made it due again meanwhile; the holder's commit sees
-- that and puts it due again): it is looked at when that lease ends.
-- Returns {id, due ms} pairs, flattened.

local P = ARGV[1]
local now = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                      tonumber(ARGV[4]))
local claimed = {}
for i = 1, #due, 2 do
  local id = due[i]
  local inc_key = P .. 'inc:' .. id
  if redis.call('EXISTS', inc_key) == 1 then
    local held_until = tonumber(redis.call('HGET', inc_key, 'claim_until') or '0')
    if held_until > now then
      redis.call('ZADD', KEYS[1], held_until, id)
    else
      redis.call('ZADD', KEYS[1], now + lease, id)
      redis.call('HSET', inc_key, 'claim', ARGV[5], 'claim_until', now + lease)
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = due[i + 1]
    end
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
