-- A job will not be delivered: move it to the dead-letter list; the queue goes on.
--
-- KEYS: 1 the queue's list, 2 the lease hash, 3 attempts, 4 last errors, 5 the dead-letter
-- list, 6 the incident, 7 the ready set.
-- ARGV: queue, job id, error text, now (ms), dead-letter cap, sink, claim token.
-- The incident's sinks.<sink>.state says "failed" until a later job gets through.
-- Returns "ok", or "gone" when the job is no longer the head or another replica holds
-- the queue now (its lease ran out): that replica may be delivering the job.

local queue = ARGV[1]
local head = redis.call('LINDEX', KEYS[1], 0)
if not head or cjson.decode(head).id ~= ARGV[2] then return 'gone' end
if redis.call('HGET', KEYS[2], queue) ~= ARGV[7] then return 'gone' end
redis.call('LPOP', KEYS[1])
local attempts = redis.call('HGET', KEYS[3], queue) or '0'
redis.call('HDEL', KEYS[3], queue)
redis.call('HDEL', KEYS[4], queue)
redis.call('LPUSH', KEYS[5], '{"job":' .. head .. ',"error":' .. cjson.encode(ARGV[3]) ..
                             ',"dead_at":' .. ARGV[4] .. ',"attempts":' .. attempts .. '}')
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[5]) - 1)

local raw = redis.call('HGET', KEYS[6], 'state')
if raw then
  local st = cjson.decode(raw)
  if type(st.sinks) == 'table' and type(st.sinks[ARGV[6]]) == 'table' then
    st.sinks[ARGV[6]].state = 'failed'
    redis.call('HSET', KEYS[6], 'state', cjson.encode(st))
  end
end

redis.call('HDEL', KEYS[2], queue)
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('ZADD', KEYS[7], tonumber(ARGV[4]), queue)
else
  redis.call('ZREM', KEYS[7], queue)
end
return 'ok'
