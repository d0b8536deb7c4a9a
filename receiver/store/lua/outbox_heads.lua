-- Take the head job of each queue this claim holds, counting the attempt.
--
-- KEYS: 1 the ready set, 2 the lease hash, 3 attempts and 4 last errors (queue -> of its
-- head job), then the lists of the queues named in ARGV, in that order.
-- ARGV: claim token, then the queues.
-- The attempt count goes up here, as the job is handed out, not after the attempt: a
-- replica killed mid-send still counts it, the next holder knows an earlier attempt may
-- have landed, and a job that kills its worker ends as a dead letter instead of looping.
-- Head and count are read in the same step, under the lease, so a stale holder's ack in
-- between cannot hand one job's count to the next. A queue no longer held is skipped; one
-- with no job left (its list expired) is let go.
-- Returns {queue, job JSON, attempt, last error} per job, flattened.

local out = {}
for i = 2, #ARGV do
  local q = ARGV[i]
  if redis.call('HGET', KEYS[2], q) == ARGV[1] then
    local head = redis.call('LINDEX', KEYS[3 + i], 0)
    if head then
      out[#out + 1] = q
      out[#out + 1] = head
      out[#out + 1] = tostring(redis.call('HINCRBY', KEYS[3], q, 1))
      out[#out + 1] = redis.call('HGET', KEYS[4], q) or ''
    else
      redis.call('ZREM', KEYS[1], q)
      redis.call('HDEL', KEYS[2], q)
      redis.call('HDEL', KEYS[3], q)
      redis.call('HDEL', KEYS[4], q)
    end
  end
end
return out
