-- Put one dead letter back at the end of its queue, as a new job.
--
-- ARGV: prefix, the dead-letter entry exactly as listed, queue, the new job's JSON
-- without its id, now (ms), retention (ms).
-- Returns the new job's id, or false when the entry is no longer in the list (another
-- redrive took it).

local P = ARGV[1]
if redis.call('LREM', P .. 'ob:dead', 1, ARGV[2]) == 0 then return false end
local id = tostring(redis.call('INCR', P .. 'ob:seq'))
local q = P .. 'ob:q:' .. ARGV[3]
redis.call('RPUSH', q, '{"id":"' .. id .. '",' .. string.sub(ARGV[4], 2))
redis.call('PEXPIRE', q, tonumber(ARGV[6]))
redis.call('ZADD', P .. 'ob:ready', 'NX', tonumber(ARGV[5]), ARGV[3])
return id
