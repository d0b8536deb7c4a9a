-- Claim the outbox queues (one per incident and sink) whose head job may be attempted now.
--
-- KEYS: 1 the ready set (queue -> when), 2 the lease hash (queue -> claim token),
-- 3 the attempts hash and 4 the last-error hash (queue -> of its head job).
-- ARGV: now (ms), lease (ms), limit, claim token.
-- A claimed queue's time moves to now + lease, so a replica that dies holding it gives it
-- up when the lease ends. Its head job's attempt count goes up at claim time, not after
-- the attempt: a replica killed mid-send still counts the attempt, the next holder knows
-- an earlier attempt may have landed, and a job that kills its worker ends as a dead
-- letter instead of looping. The head job itself is read by the caller once the queue is
-- held (a held queue's head cannot change): the queues' lists are keys this script cannot
-- name in advance, and Redis Cluster wants every key a script touches given to it.
-- Returns {queue, attempt, last error} per claim, flattened.

local now = tonumber(ARGV[1])
local queues = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, q in ipairs(queues) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), q)
  redis.call('HSET', KEYS[2], q, ARGV[4])
  out[#out + 1] = q
  out[#out + 1] = tostring(redis.call('HINCRBY', KEYS[3], q, 1))
  out[#out + 1] = redis.call('HGET', KEYS[4], q) or ''
end
return out
