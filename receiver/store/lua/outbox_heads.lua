-- uses: answers
-- Take the head job of each queue this claim holds, counting the attempt.
--
-- KEYS: 1 the ready set, 2 the lease hash, 3 attempts and 4 last errors (queue -> of its
-- head job), 5 this call's answer (ob:heads:<token>), then the lists of the queues named
-- in ARGV, in that order.
-- ARGV: claim token, now (ms), lease (ms), then the queues.
-- The attempt count goes up here, as the job is handed out, not after the attempt: a
-- replica killed mid-send still counts it, the next holder knows an earlier attempt may
-- have landed, and a job that kills its worker ends as a dead letter instead of looping.
-- Head and count are read in the same step, under the lease, so a stale holder's ack in
-- between cannot hand one job's count to the next. A queue no longer held is skipped; one
-- with no job left (its list expired) is let go.
-- The answer is kept for the lease (shared/answers.lua): the same call again does not
-- count every attempt twice.
-- Returns {queue, job JSON, attempt, last error} per job, flattened.

local now = tonumber(ARGV[2])
local until_ms = now + tonumber(ARGV[3])
local again = kept_answer(KEYS[5], now)
if again then return again end
local out = {}
for i = 4, #ARGV do
  local q = ARGV[i]
  if redis.call('HGET', KEYS[2], q) == ARGV[1] then
    local head = redis.call('LINDEX', KEYS[2 + i], 0)
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
return keep_answer(KEYS[5], out, until_ms, ARGV[3])
