-- Put one dead letter back at the end of its queue, as a new job.
--
-- KEYS: 1 the dead-letter list, 2 the job counter, 3 the queue's list, 4 the ready set.
-- ARGV: the dead-letter entry exactly as listed, queue, the new job's JSON without its id,
-- now (ms), retention (ms).
-- Returns the new job's id, or false when the entry is no longer in the list (another
-- redrive took it).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return false end
local id = tostring(redis.call('INCR', KEYS[2]))
redis.call('RPUSH', KEYS[3], '{"id":"' .. id .. '",' .. string.sub(ARGV[3], 2))
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[4], 'NX', tonumber(ARGV[4]), ARGV[2])
return id
