-- A sink took a job: drop it, keep its receipt on the incident, hand over the next job.
--
-- ARGV: prefix, queue, job id, claim token, now (ms), lease (ms), incident id, sink,
-- receipt (JSON object merged into the incident's sinks.<sink>).
-- The receipt is kept only when the job is still the queue's head: a replica whose lease
-- ran out must not write an older receipt over a newer one.
-- Returns {"gone"} when the job was no longer the head, {"ok"} when nothing follows for
-- this holder, or {"next", job JSON, attempt, last error} with the lease renewed.

local P = ARGV[1]
local queue = ARGV[2]
local q = P .. 'ob:q:' .. queue
local head = redis.call('LINDEX', q, 0)
if not head or cjson.decode(head).id ~= ARGV[3] then return {'gone'} end
redis.call('LPOP', q)
redis.call('HDEL', P .. 'ob:att', ARGV[3])
redis.call('HDEL', P .. 'ob:err', ARGV[3])

local inc_key = P .. 'inc:' .. ARGV[7]
local raw = redis.call('HGET', inc_key, 'state')
if raw then
  local st = cjson.decode(raw)
  if type(st.sinks) ~= 'table' then st.sinks = {} end
  local mine = st.sinks[ARGV[8]]
  if type(mine) ~= 'table' then mine = {} end
  for k, v in pairs(cjson.decode(ARGV[9])) do mine[k] = v end
  st.sinks[ARGV[8]] = mine
  redis.call('HSET', inc_key, 'state', cjson.encode(st))
end

local ready = P .. 'ob:ready'
local nxt = redis.call('LINDEX', q, 0)
if not nxt then
  redis.call('ZREM', ready, queue)
  redis.call('HDEL', P .. 'ob:lease', queue)
  return {'ok'}
end
if redis.call('HGET', P .. 'ob:lease', queue) ~= ARGV[4] then return {'ok'} end
redis.call('ZADD', ready, tonumber(ARGV[5]) + tonumber(ARGV[6]), queue)
local id = cjson.decode(nxt).id
return {'next', nxt, tostring(redis.call('HINCRBY', P .. 'ob:att', id, 1)),
        redis.call('HGET', P .. 'ob:err', id) or ''}
