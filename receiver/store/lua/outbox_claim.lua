-- uses: answers
-- Claim the outbox queues (one per incident and sink) whose head job may be attempted now.
--
-- KEYS: 1 the ready set (queue -> when), 2 the lease hash (queue -> claim token), 3 this
-- claim's answer (ob:claimed:<token>), 4 the answer of outbox_heads.lua for this token.
-- ARGV: now (ms), lease (ms), limit, claim token.
-- A claimed queue's time moves to now + lease, so a replica that dies holding it gives it
-- up when the lease ends. The head jobs are taken by outbox_heads.lua, which is given the
-- queues' lists: this script cannot name them in advance, and Redis Cluster wants every
-- key a script touches given to it.
-- A call that claims something keeps its answer for the lease (shared/answers.lua).
-- Returns the claimed queues.

local now = tonumber(ARGV[1])
local until_ms = now + tonumber(ARGV[2])
local again = kept_answer(KEYS[3], now)
if again then return again end
-- Claimed afresh: heads kept for this token belong to queues claimed before, never to these.
redis.call('DEL', KEYS[4])
local queues = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, q in ipairs(queues) do
  redis.call('ZADD', KEYS[1], until_ms, q)
  redis.call('HSET', KEYS[2], q, ARGV[4])
end
return keep_answer(KEYS[3], queues, until_ms, ARGV[2])
