-- A claimed queue had no job (its list expired): let it go, unless a job came meanwhile.
--
-- KEYS: 1 the queue's list, 2 the ready set, 3 the lease hash, 4 attempts, 5 last errors.
-- ARGV: queue, claim token.
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
