-- Give a claim back without a decision, due again at the given time.
-- KEYS[1] the due set.  ARGV: prefix, id, claim token, due (ms).
local inc_key = ARGV[1] .. 'inc:' .. ARGV[2]
if redis.call('HGET', inc_key, 'claim') ~= ARGV[3] then return 0 end
redis.call('HDEL', inc_key, 'claim', 'claim_until')
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[2])
return 1
