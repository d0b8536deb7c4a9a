-- Write the scheduler's decision for one claimed incident, if nothing moved under it.
--
-- KEYS[1] the due set.  ARGV: prefix, id, claim token, version read, state JSON,
-- next due (ms, or -1 for none), retention (ms), timeline cap, then timeline entries to
-- append (JSON each).
-- Returns "ok"; "lost" when another replica holds the claim now; "stale" when a batch
-- changed the incident since it was read (read again and decide again).

local P = ARGV[1]
local id = ARGV[2]
local inc_key = P .. 'inc:' .. id
local claim = redis.call('HGET', inc_key, 'claim')
if claim ~= ARGV[3] then return 'lost' end
if redis.call('HGET', inc_key, 'ver') ~= ARGV[4] then return 'stale' end
redis.call('HSET', inc_key, 'state', ARGV[5])
redis.call('HINCRBY', inc_key, 'ver', 1)
redis.call('HDEL', inc_key, 'claim')
local next_due = tonumber(ARGV[6])
if next_due >= 0 then
  redis.call('ZADD', KEYS[1], next_due, id)
else
  redis.call('ZREM', KEYS[1], id)
end
local retention = tonumber(ARGV[7])
if #ARGV > 8 then
  local tl_key = P .. 'tl:' .. id
  for i = 9, #ARGV do redis.call('RPUSH', tl_key, ARGV[i]) end
  -- The same cap as ingest.lua: keep the first entries and the latest ones.
  for _ = 1, redis.call('LLEN', tl_key) - tonumber(ARGV[8]) do
    redis.call('LSET', tl_key, 10, '\0')  -- the first 10 entries stay
    redis.call('LREM', tl_key, 1, '\0')
    redis.call('HINCRBY', inc_key, 'tl_dropped', 1)
  end
  redis.call('PEXPIRE', tl_key, retention)
end
redis.call('PEXPIRE', inc_key, retention)
return 'ok'
