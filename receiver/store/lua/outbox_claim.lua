-- Claim the outbox queues (one per incident and sink) whose head job may be attempted now.
--
-- KEYS: 1 the ready set (queue -> when), 2 the lease hash (queue -> claim token).
-- ARGV: now (ms), lease (ms), limit, claim token.
-- A claimed queue's time moves to now + lease, so a replica that dies holding it gives it
-- up when the lease ends. The head jobs are taken by outbox_heads.lua, which is given the
-- queues' lists: this script cannot name them in advance, and Redis Cluster wants every
-- key a script touches given to it.
-- Returns the claimed queues.

local now = tonumber(ARGV[1])
local queues = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, q in ipairs(queues) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), q)
  redis.call('HSET', KEYS[2], q, ARGV[4])
end
return queues
