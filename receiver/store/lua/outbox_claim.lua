-- Claim the outbox queues (one per incident and sink) whose head job may be attempted now.
--
-- ARGV: prefix, now (ms), lease (ms), limit, claim token.
-- A claimed queue's time moves to now + lease, so a replica that dies holding it gives it
-- up when the lease ends. Its head job's attempt count goes up at claim time, not after
-- the attempt: a replica killed mid-send still counts the attempt, the next holder knows
-- an earlier attempt may have landed, and a job that kills its worker ends as a dead
-- letter instead of looping.
-- Returns {queue, job JSON, attempt, last error} per claim, flattened.

local P = ARGV[1]
local now = tonumber(ARGV[2])
local ready = P .. 'ob:ready'
local queues = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, q in ipairs(queues) do
  local head = redis.call('LINDEX', P .. 'ob:q:' .. q, 0)
  if head then
    redis.call('ZADD', ready, now + tonumber(ARGV[3]), q)
    redis.call('HSET', P .. 'ob:lease', q, ARGV[5])
    local id = cjson.decode(head).id
    out[#out + 1] = q
    out[#out + 1] = head
    out[#out + 1] = tostring(redis.call('HINCRBY', P .. 'ob:att', id, 1))
    out[#out + 1] = redis.call('HGET', P .. 'ob:err', id) or ''
  else
    redis.call('ZREM', ready, q)
    redis.call('HDEL', P .. 'ob:lease', q)
  end
end
return out
