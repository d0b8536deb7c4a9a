-- A job's attempt failed and is worth another: keep it at the head, try again at a time.
--
-- ARGV: prefix, queue, job id, claim token, next attempt (ms), error text.
-- Returns "ok", or "lost" when the job is not the head or another replica holds the
-- queue now (its lease ran out); then that replica's schedule stands.

local P = ARGV[1]
local queue = ARGV[2]
local head = redis.call('LINDEX', P .. 'ob:q:' .. queue, 0)
if not head or cjson.decode(head).id ~= ARGV[3] then return 'lost' end
if redis.call('HGET', P .. 'ob:lease', queue) ~= ARGV[4] then return 'lost' end
redis.call('HSET', P .. 'ob:err', ARGV[3], ARGV[6])
redis.call('ZADD', P .. 'ob:ready', tonumber(ARGV[5]), queue)
redis.call('HDEL', P .. 'ob:lease', queue)
return 'ok'
