-- A job's attempt failed and is worth another: keep it at the head, try again at a time.
--
-- KEYS: 1 the queue's list, 2 the lease hash, 3 last errors, 4 the ready set.
-- ARGV: queue, job id, claim token, next attempt (ms), error text.
-- Returns "ok", or "lost" when the job is not the head or another replica holds the
-- queue now (its lease ran out); then that replica's schedule stands.

local queue = ARGV[1]
local head = redis.call('LINDEX', KEYS[1], 0)
if not head or cjson.decode(head).id ~= ARGV[2] then return 'lost' end
if redis.call('HGET', KEYS[2], queue) ~= ARGV[3] then return 'lost' end
redis.call('HSET', KEYS[3], queue, ARGV[5])
redis.call('ZADD', KEYS[4], tonumber(ARGV[4]), queue)
redis.call('HDEL', KEYS[2], queue)
return 'ok'
