-- What people and peers add to an incident between the scheduler's decisions: feedback,
-- a responder's acknowledgement or resolve, silences, receipts from the world outside.
--
-- KEYS: 1 the incident, 2 its timeline, 3 the once-marker (or any key of the slot when
-- there is none), 4 the outbox job counter, 5 the outbox's ready set, 6 the due set, then
-- one queue list per outbox job, in the jobs' order.
-- ARGV: 1 changes (JSON: {"append": {field: [records]}, "merge": {field or
-- "field.key": {k: v}}, "fill": {same, but only keys not already set}}), 2 now (ms),
-- 3 retention (ms), 4 timeline cap, 5 how long the once-marker lasts (ms; 0: none),
-- 6 when the scheduler should look at the incident again at the latest (ms; -1: no
-- matter), 7 the number of outbox jobs, that many (queue, job JSON without its id) pairs,
-- then timeline entries (JSON each).
-- A once-marker makes a vendor's retried webhook land once. Returns "unknown" for an
-- unknown incident, "repeat" when the marker was already there, "stale" when the value
-- ``changes.expect`` names ([path, key, value or null]) is no longer the one given, else
-- "ok".

local raw = redis.call('HGET', KEYS[1], 'state')
if not raw then return 'unknown' end
local now = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local once_ms = tonumber(ARGV[5])
local st = cjson.decode(raw)
local changes = cjson.decode(ARGV[1])
-- Decided on a value another replica (or request) has changed since it was read (a
-- vendor's newer move applied meanwhile): nothing lands, not even the once-marker, so
-- that the caller reads again and decides again.
if type(changes.expect) == 'table' then
  local path, key, want = changes.expect[1], changes.expect[2], changes.expect[3]
  local dot = string.find(path, '.', 1, true)
  local t = st[dot and string.sub(path, 1, dot - 1) or path]
  if dot and type(t) == 'table' then t = t[string.sub(path, dot + 1)] end
  local have = type(t) == 'table' and t[key] or nil
  if have == cjson.null then have = nil end
  if want == cjson.null then want = nil end
  if have ~= nil then have = tostring(have) end
  if have ~= want then return 'stale' end
end
if once_ms > 0 then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', once_ms) then return 'repeat' end
end

-- The table at "field" or "field.key", made if missing (cjson reads {} back as a table).
local function table_at(path)
  local dot = string.find(path, '.', 1, true)
  local field = dot and string.sub(path, 1, dot - 1) or path
  if type(st[field]) ~= 'table' then st[field] = {} end
  if not dot then return st[field] end
  local key = string.sub(path, dot + 1)
  if type(st[field][key]) ~= 'table' then st[field][key] = {} end
  return st[field][key]
end

local function said(v)
  return v ~= nil and v ~= cjson.null and v ~= false
end

-- A feedback record that is only a "useful" vote: what fixed it, a "not useful", a wrong
-- cause or grouping and a note are what the figures and the next similar incident read.
local function verdict_only(r)
  return type(r) == 'table' and type(r.useful) == 'boolean' and not (said(r.fixed_by)
    or said(r.action) or said(r.cause) or said(r.note) or said(r.wrong_cause)
    or said(r.wrong_grouping))
end
local function plain_vote(r)
  return verdict_only(r) and r.useful == true
end

-- A person's latest verdict is theirs, records with no "by" being one voice, the API's
-- (receiver.incident.latest_verdicts: the figures and the Slack message count it so): a
-- bare verdict the same voice gave again later goes first, as it counts nowhere; a plain
-- vote that took back the voice's earlier "not useful" is kept as long as that.
local function voice(r)
  if type(r.by) == 'string' then return r.by end
  return false
end
local function said_again(list, i, later)
  local by = voice(list[i])
  local from, to = i + 1, #list
  if not later then from, to = 1, i - 1 end
  for j = from, to do
    local r = list[j]
    if type(r) == 'table' and voice(r) == by and type(r.useful) == 'boolean'
      and (later or r.useful == false) then
      return true
    end
  end
  return false
end

for field, records in pairs(changes.append or {}) do
  local list = table_at(field)
  for _, record in ipairs(records) do list[#list + 1] = record end
  -- Every batch decodes the state document: keep the latest 50 records of each list; of
  -- feedback, a bare verdict its person replaced goes first, then the oldest plain vote
  -- (the oldest record when there is none); of actions_run, the oldest that did not run
  -- or fail.
  -- A silence still in force is kept beyond 50 (up to 200, the oldest going first): its id
  -- is how it is found and expired from the incident; ended ones go first, those
  -- Alertmanager ended early (silences_ended) included.
  if field == 'silences' then
    local early = type(st.silences_ended) == 'table' and st.silences_ended or {}
    local i = 1
    while #list > 50 and i <= #list do
      local ends = type(list[i]) == 'table' and tonumber(list[i].ends_at) or nil
      if ends == nil or ends <= now or early[list[i].id] ~= nil then
        table.remove(list, i)
      else
        i = i + 1
      end
    end
    while #list > 200 do table.remove(list, 1) end
  end
  while field ~= 'silences' and #list > 50 do
    local drop = 1
    if field == 'feedback' then
      local found = false
      for i = 1, #list - 1 do
        if verdict_only(list[i]) and said_again(list, i, true) then
          drop, found = i, true
          break
        end
      end
      for i = 1, found and 0 or #list - 1 do
        if plain_vote(list[i]) and not said_again(list, i, false) then drop = i break end
      end
    elseif field == 'actions_run' then
      -- A run that ran or failed is what the incident, its outcome and its page are
      -- about: refusals (anyone in the channel may click Run) and skips go first.
      for i = 1, #list - 1 do
        local status = type(list[i]) == 'table' and list[i].status or nil
        if status ~= 'ran' and status ~= 'failed' then drop = i break end
      end
    end
    table.remove(list, drop)
  end
end
for path, values in pairs(changes.merge or {}) do
  local t = table_at(path)
  for k, v in pairs(values) do t[k] = v end
end
for path, values in pairs(changes.fill or {}) do
  local t = table_at(path)
  for k, v in pairs(values) do
    if t[k] == nil or t[k] == cjson.null then t[k] = v end
  end
end
redis.call('HSET', KEYS[1], 'state', cjson.encode(st))
redis.call('HINCRBY', KEYS[1], 'ver', 1)

local due = tonumber(ARGV[6])
if due >= 0 and st.status == 'open' then
  -- Earlier only: a claim's lease (its score) is never cut short by more than that.
  redis.call('ZADD', KEYS[6], 'LT', due, st.id)
end

local jobs = tonumber(ARGV[7])
local first_entry = 8 + 2 * jobs
for i = 8, first_entry - 1, 2 do
  local job_id = tostring(redis.call('INCR', KEYS[4]))
  local q = KEYS[7 + (i - 8) / 2]
  redis.call('RPUSH', q, '{"id":"' .. job_id .. '",' .. string.sub(ARGV[i + 1], 2))
  redis.call('PEXPIRE', q, retention)
  redis.call('ZADD', KEYS[5], 'NX', now, ARGV[i])
end
if #ARGV >= first_entry then
  local tl_key = KEYS[2]
  for i = first_entry, #ARGV do redis.call('RPUSH', tl_key, ARGV[i]) end
  -- The same cap as ingest.lua and commit.lua: the first entries and the latest ones.
  for _ = 1, redis.call('LLEN', tl_key) - tonumber(ARGV[4]) do
    redis.call('LSET', tl_key, 10, '\0')
    redis.call('LREM', tl_key, 1, '\0')
    redis.call('HINCRBY', KEYS[1], 'tl_dropped', 1)
  end
  redis.call('PEXPIRE', tl_key, retention)
end
return 'ok'
