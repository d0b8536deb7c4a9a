-- Merge the scheduler's decision into one claimed incident.
--
-- KEYS[1] the due set.  ARGV: prefix, id, claim token, version read, now (ms),
-- guard (JSON: field -> the value the decision relied on), patch (JSON: the scheduler's
-- fields), next due (ms, or -1 for none), retention (ms), timeline cap, the number of
-- outbox jobs, that many (queue, job JSON without its id) pairs, then timeline entries to
-- append (JSON each).
-- The jobs are the deliveries this decision makes due: written here, in the same atomic
-- step as the decision, a crash right after it cannot lose them (the outbox delivers them).
-- Batches keep landing while the scheduler decides; they change the counts, not the
-- decision, unless they change a guarded field. Replacing the whole document instead
-- would lose every such race, and during a long storm no notification would ever go out.
-- Returns "ok"; "lost" when another replica holds the claim now; "stale" when a guarded
-- field changed (read again and decide again).

local P = ARGV[1]
local id = ARGV[2]
local now = tonumber(ARGV[5])
local inc_key = P .. 'inc:' .. id
if redis.call('HGET', inc_key, 'claim') ~= ARGV[3] then return 'lost' end
local function plain(v)
  if v == nil or v == cjson.null then return '' end
  return tostring(v)
end
local st = cjson.decode(redis.call('HGET', inc_key, 'state'))
for field, expected in pairs(cjson.decode(ARGV[6])) do
  if plain(st[field]) ~= plain(expected) then return 'stale' end
end
for field, value in pairs(cjson.decode(ARGV[7])) do st[field] = value end
local jobs = tonumber(ARGV[11])
local first_entry = 12 + 2 * jobs
if jobs > 0 and type(st.sinks) ~= 'table' then st.sinks = {} end
for i = 12, first_entry - 1, 2 do
  -- A sink with a job queued has heard of the incident, as far as later decisions go: its
  -- resolve is queued behind its open.
  local sink = cjson.decode(ARGV[i + 1]).sink
  if type(st.sinks[sink]) ~= 'table' then st.sinks[sink] = {state = 'pending'} end
end
redis.call('HSET', inc_key, 'state', cjson.encode(st))
local moved = redis.call('HGET', inc_key, 'ver') ~= ARGV[4]
redis.call('HINCRBY', inc_key, 'ver', 1)
redis.call('HDEL', inc_key, 'claim', 'claim_until')
local next_due = tonumber(ARGV[8])
if moved and st.status == 'open' and (next_due < 0 or next_due > now) then
  -- Batches landed between the read and this write, unseen by the decision: look again.
  next_due = now
end
if next_due >= 0 then
  redis.call('ZADD', KEYS[1], next_due, id)
else
  redis.call('ZREM', KEYS[1], id)
end
local retention = tonumber(ARGV[9])
for i = 12, first_entry - 1, 2 do
  local job_id = tostring(redis.call('INCR', P .. 'ob:seq'))
  local q = P .. 'ob:q:' .. ARGV[i]
  redis.call('RPUSH', q, '{"id":"' .. job_id .. '",' .. string.sub(ARGV[i + 1], 2))
  redis.call('PEXPIRE', q, retention)
  -- NX: a queue waiting out a backoff or held by a worker keeps its time; the new job
  -- waits behind the ones before it.
  redis.call('ZADD', P .. 'ob:ready', 'NX', now, ARGV[i])
end
if #ARGV >= first_entry then
  local tl_key = P .. 'tl:' .. id
  for i = first_entry, #ARGV do redis.call('RPUSH', tl_key, ARGV[i]) end
  -- The same cap as ingest.lua: keep the first entries and the latest ones.
  for _ = 1, redis.call('LLEN', tl_key) - tonumber(ARGV[10]) do
    redis.call('LSET', tl_key, 10, '\0')  -- the first 10 entries stay
    redis.call('LREM', tl_key, 1, '\0')
    redis.call('HINCRBY', inc_key, 'tl_dropped', 1)
  end
  redis.call('PEXPIRE', tl_key, retention)
end
redis.call('PEXPIRE', inc_key, retention)
-- The key's mapping and its id counter live as long as the incident does: an expired
-- counter would number the next incident of this key with an id still in use.
redis.call('PEXPIRE', P .. 'key:' .. st.digest, retention)
redis.call('PEXPIRE', P .. 'seq:' .. st.digest, retention)
return 'ok'
