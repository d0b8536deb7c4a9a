-- Put one dead letter back at the end of its queue, as a new job.
--
-- KEYS: 1 the dead-letter list, 2 the job counter, 3 the queue's list, 4 the ready set, 5
-- the incident.
-- ARGV: the dead-letter entry exactly as listed, queue, the new job's JSON without its id,
-- now (ms), retention (ms), and what the job's kind was chosen from: the incident's status
-- and whether its episode is acknowledged ("1" or "0").
-- Returns the new job's id; false when the entry is no longer in the list (another
-- redrive took it); "moved" when the incident's status or acknowledgement is no longer
-- the one the kind was chosen from (a decision landed meanwhile: choose again), "gone"
-- when the incident expired.

local raw = redis.call('HGET', KEYS[5], 'state')
if not raw then return 'gone' end
local st = cjson.decode(raw)
-- Acknowledged and not lapsed since (timed out in PagerDuty, which pages again).
local r = st.response
local acknowledged = type(r) == 'table' and r.acknowledged_at ~= nil
                     and r.acknowledged_at ~= cjson.null
                     and (r.lapsed_at == nil or r.lapsed_at == cjson.null)
if st.status ~= ARGV[6] or (acknowledged and '1' or '0') ~= ARGV[7] then return 'moved' end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return false end
local id = tostring(redis.call('INCR', KEYS[2]))
redis.call('RPUSH', KEYS[3], '{"id":"' .. id .. '",' .. string.sub(ARGV[3], 2))
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[4], 'NX', tonumber(ARGV[4]), ARGV[2])
return id
