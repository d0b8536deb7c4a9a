-- Merge the scheduler's decision into one claimed incident.
--
-- KEYS: 1 the due set, 2 the claims hash, 3 the incident, 4 its timeline, 5 its key's
-- mapping (key:<digest>), 6 its key's id counter (seq:<digest>), 7 the outbox job counter,
-- 8 the outbox's ready set, 9 the alive set (see ingest.lua), 10 to 13 its alerts'
-- meta and record hashes, resolved set and latest changes (am:, ab:, ar:, rc:), 14 the
-- resolutions set (incident id by when it resolved), then one queue list per outbox job,
-- in the jobs' order.
-- ARGV: 1 id, 2 claim token, 3 version read, 4 now (ms), 5 guard (JSON: field -> the value
-- the decision relied on), 6 patch (JSON: the scheduler's fields that ingest reads too), 7
-- next due (ms, or -1 for none), 8 retention (ms), 9 timeline cap, 10 the number of outbox
-- jobs, 11 the view (JSON: the scheduler's other fields, written whole into the hash's
-- ``view``, which ingest never reads), 12 the view's field names (space-separated), then
-- that many (queue, job JSON without its id) pairs, then timeline entries to append (JSON
-- each).
-- The jobs are the deliveries this decision makes due: written here, in the same atomic
-- step as the decision, a crash right after it cannot lose them (the outbox delivers them).
-- Batches keep landing while the scheduler decides; they change the counts, not the
-- decision, unless they change a guarded field. Replacing the whole document instead
-- would lose every such race, and during a long storm no notification would ever go out.
-- Returns "ok"; "lost" when another replica holds the claim now, or the incident expired
-- since it was read (its claim and due entry go with it); "stale" when a guarded field
-- changed (read again and decide again).

local id = ARGV[1]
local now = tonumber(ARGV[4])
local inc_key = KEYS[3]
local held = redis.call('HGET', KEYS[2], id)
if not held or string.match(held, '^([^|]*)') ~= ARGV[2] then return 'lost' end
local function plain(v)
  if v == nil or v == cjson.null then return '' end
  return tostring(v)
end
local got = redis.call('HMGET', inc_key, 'state', 'ver', 'kept')
local raw = got[1]
if not raw then
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
  return 'lost'
end
local st = cjson.decode(raw)
for field, expected in pairs(cjson.decode(ARGV[5])) do
  if plain(st[field]) ~= plain(expected) then return 'stale' end
end
for field, value in pairs(cjson.decode(ARGV[6])) do st[field] = value end
-- An incident stored before the view had its own document keeps those fields in the
-- state: they go, or every batch would still decode them.
for field in string.gmatch(ARGV[12], '%S+') do st[field] = nil end
local jobs = tonumber(ARGV[10])
local first_job = 13
local first_entry = first_job + 2 * jobs
if jobs > 0 and type(st.sinks) ~= 'table' then st.sinks = {} end
for i = first_job, first_entry - 1, 2 do
  -- A sink with a job queued has heard of the incident, as far as later decisions go: its
  -- resolve is queued behind its open.
  local sink = cjson.decode(ARGV[i + 1]).sink
  if type(st.sinks[sink]) ~= 'table' then st.sinks[sink] = {state = 'pending'} end
end
local retention = tonumber(ARGV[8])
-- Lifetimes are renewed as ingest.lua renews them, once a 64th of the retention has passed
-- since the last time: a decision right after a batch (the usual case) renews nothing.
local renew = now - (tonumber(got[3]) or 0) >= math.floor(retention / 64)
-- The version read above, one up: what an HINCRBY would write, in the same HSET.
local ver = string.format('%d', (tonumber(got[2]) or 0) + 1)
if renew then
  redis.call('HSET', inc_key, 'state', cjson.encode(st), 'view', ARGV[11], 'ver', ver,
             'kept', ARGV[4])
else
  redis.call('HSET', inc_key, 'state', cjson.encode(st), 'view', ARGV[11], 'ver', ver)
end
local moved = got[2] ~= ARGV[3]
redis.call('HDEL', KEYS[2], id)
local next_due = tonumber(ARGV[7])
if moved and st.status == 'open' and (next_due < 0 or next_due > now) then
  -- Batches landed between the read and this write, unseen by the decision: look again.
  next_due = now
end
if next_due >= 0 then
  redis.call('ZADD', KEYS[1], next_due, id)
else
  redis.call('ZREM', KEYS[1], id)
end
if st.status == 'resolved' and type(st.resolved_at) == 'number' then
  -- By when it resolved, for reconcile (resolved_since), however long ago it opened. A
  -- reopened one stays until it is a retention old: readers check its status.
  redis.call('ZADD', KEYS[14], st.resolved_at, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[14], '-inf', '(' .. string.format('%d', now - retention))
end
if jobs > 0 then
  -- The jobs' ids, one counter step each, taken in one call.
  local job_id = redis.call('INCRBY', KEYS[7], jobs) - jobs
  local ready = {'NX'}
  for i = first_job, first_entry - 1, 2 do
    job_id = job_id + 1
    local q = KEYS[15 + (i - first_job) / 2]
    redis.call('RPUSH', q, '{"id":"' .. string.format('%d', job_id) .. '",' ..
               string.sub(ARGV[i + 1], 2))
    redis.call('PEXPIRE', q, ARGV[8])
    ready[#ready + 1] = ARGV[4]
    ready[#ready + 1] = ARGV[i]
  end
  -- NX: a queue waiting out a backoff or held by a worker keeps its time; the new job
  -- waits behind the ones before it.
  redis.call('ZADD', KEYS[8], unpack(ready))
end
if #ARGV >= first_entry then
  local tl_key = KEYS[4]
  -- A call per CHUNK entries (unpack() has a limit; a decision appends a handful); the
  -- last answer is the length.
  local CHUNK = 1000
  local length = 0
  for i = first_entry, #ARGV, CHUNK do
    length = redis.call('RPUSH', tl_key, unpack(ARGV, i, math.min(i + CHUNK - 1, #ARGV)))
  end
  -- The same cap as ingest.lua: keep the first entries and the latest ones.
  for _ = 1, length - tonumber(ARGV[9]) do
    redis.call('LSET', tl_key, 10, '\0')  -- the first 10 entries stay
    redis.call('LREM', tl_key, 1, '\0')
    redis.call('HINCRBY', inc_key, 'tl_dropped', 1)
  end
end
if renew then
  -- ARGV[8]: the retention as given, not formatted again for every call.
  redis.call('PEXPIRE', inc_key, ARGV[8])
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
  redis.call('ZADD', KEYS[9], ARGV[4], id)
  -- The alerts live as long as the incident that shows them: a decision after the last
  -- batch (a resolve after resolve_after) must not leave an incident whose alerts expired.
  redis.call('PEXPIRE', KEYS[10], ARGV[8])
  redis.call('PEXPIRE', KEYS[11], ARGV[8])
  redis.call('PEXPIRE', KEYS[12], ARGV[8])
  redis.call('PEXPIRE', KEYS[13], ARGV[8])
  -- The key's mapping and its id counter live as long as the incident does: an expired
  -- counter would number the next incident of this key with an id still in use.
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
  redis.call('PEXPIRE', KEYS[6], ARGV[8])
end
return 'ok'
