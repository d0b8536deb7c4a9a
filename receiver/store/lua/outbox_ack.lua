-- A sink took a job: drop it, keep its receipt on the incident, hand over the next job.
--
-- KEYS: 1 the queue's list, 2 attempts, 3 last errors, 4 the incident, 5 the ready set,
-- 6 the lease hash.
-- ARGV: queue, job id, claim token, now (ms), lease (ms), sink, receipt (JSON object
-- merged into the incident's sinks.<sink>; an empty one, as an action's run gives, leaves
-- the incident alone).
-- The receipt is kept only when the job is still the queue's head: a replica whose lease
-- ran out must not write an older receipt over a newer one.
-- Returns {"gone"} when the job was no longer the head, {"ok"} when nothing follows for
-- this holder, or {"next", job JSON, attempt, last error} with the lease renewed.

local queue = ARGV[1]
local head = redis.call('LINDEX', KEYS[1], 0)
if not head or cjson.decode(head).id ~= ARGV[2] then return {'gone'} end
redis.call('LPOP', KEYS[1])
redis.call('HDEL', KEYS[2], queue)
redis.call('HDEL', KEYS[3], queue)

local receipt = cjson.decode(ARGV[7])
local raw = next(receipt) ~= nil and redis.call('HGET', KEYS[4], 'state')
if raw then
  local st = cjson.decode(raw)
  if type(st.sinks) ~= 'table' then st.sinks = {} end
  local mine = st.sinks[ARGV[6]]
  if type(mine) ~= 'table' then mine = {} end
  for k, v in pairs(receipt) do mine[k] = v end
  st.sinks[ARGV[6]] = mine
  redis.call('HSET', KEYS[4], 'state', cjson.encode(st))
end

local nxt = redis.call('LINDEX', KEYS[1], 0)
if not nxt then
  redis.call('ZREM', KEYS[5], queue)
  redis.call('HDEL', KEYS[6], queue)
  return {'ok'}
end
if redis.call('HGET', KEYS[6], queue) ~= ARGV[3] then return {'ok'} end
redis.call('ZADD', KEYS[5], tonumber(ARGV[4]) + tonumber(ARGV[5]), queue)
return {'next', nxt, tostring(redis.call('HINCRBY', KEYS[2], queue, 1)), ''}
