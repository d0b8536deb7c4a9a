-- Give a claim back without a decision: due again at the given time, or, with none (the
-- incident expired), out of the due set for good.
-- KEYS: 1 the due set, 2 the claims hash.  ARGV: id, claim token, due (ms) or "".
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held or string.match(held, '^([^|]*)') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[1])
end
return 1
