-- Take one of the slots of a sliding window: at most `limit` holders in any `window`,
-- over every replica (the rate limit of action runs).
--
-- KEYS: 1 the sorted set of holders (score: when each took its slot, ms).
-- ARGV: 1 holder, 2 now (ms), 3 window (ms), 4 limit.
-- A holder still in the window keeps its slot: asking again takes no second one.
-- Returns 1 when the holder has a slot, else 0.

local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], window)
return 1
