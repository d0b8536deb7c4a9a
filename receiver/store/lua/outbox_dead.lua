-- A job will not be delivered: move it to the dead-letter list; the queue goes on.
--
-- ARGV: prefix, queue, job id, error text, now (ms), dead-letter cap, incident id, sink,
-- claim token.
-- The incident's sinks.<sink>.state says "failed" until a later job gets through.
-- Returns "ok", or "gone" when the job is no longer the head or another replica holds
-- the queue now (its lease ran out): that replica may be delivering the job.

local P = ARGV[1]
local queue = ARGV[2]
local q = P .. 'ob:q:' .. queue
local head = redis.call('LINDEX', q, 0)
if not head or cjson.decode(head).id ~= ARGV[3] then return 'gone' end
if redis.call('HGET', P .. 'ob:lease', queue) ~= ARGV[9] then return 'gone' end
redis.call('LPOP', q)
local attempts = redis.call('HGET', P .. 'ob:att', ARGV[3]) or '0'
redis.call('HDEL', P .. 'ob:att', ARGV[3])
redis.call('HDEL', P .. 'ob:err', ARGV[3])
local dead = P .. 'ob:dead'
redis.call('LPUSH', dead, '{"job":' .. head .. ',"error":' .. cjson.encode(ARGV[4]) ..
                          ',"dead_at":' .. ARGV[5] .. ',"attempts":' .. attempts .. '}')
redis.call('LTRIM', dead, 0, tonumber(ARGV[6]) - 1)

local inc_key = P .. 'inc:' .. ARGV[7]
local raw = redis.call('HGET', inc_key, 'state')
if raw then
  local st = cjson.decode(raw)
  if type(st.sinks) == 'table' and type(st.sinks[ARGV[8]]) == 'table' then
    st.sinks[ARGV[8]].state = 'failed'
    redis.call('HSET', inc_key, 'state', cjson.encode(st))
  end
end

local ready = P .. 'ob:ready'
redis.call('HDEL', P .. 'ob:lease', queue)
if redis.call('LLEN', q) > 0 then
  redis.call('ZADD', ready, tonumber(ARGV[5]), queue)
else
  redis.call('ZREM', ready, queue)
end
return 'ok'
