-- Apply webhook batches atomically, one after the other: every alert lands in the one
-- incident of its key. Several batches go in one call when they arrived while the call
-- before was running (receiver/store/redis.py): each incident's state is then read and
-- written once for all of them, and the call's fixed cost is shared.
--
-- KEYS     every key the script touches, all under one {hash tag} (Redis Cluster wants
--          each given): 1 the due set, 2 the incident index, 3 the alive set, 4 to 6 the
--          owner index's buckets of this width (the retention) owners:<width>:<n-2>, <n-1>
--          and <n> (n: now's, see below), 7 the widths in use (owners:widths), then now's
--          bucket and the one before of each other width in use (ARGV 14), then, per digest of the plan, key:<digest>, seq:<digest> and the inc/am/ab/ar/
--          tl/rc keys of its current incident and of the one it would open next. The script
--          names them the same way; it only touches what the plan foresaw.
-- ARGV     1 key prefix ("{jr}:")   2 now (ms)   3 group_wait (ms)   4 reopen_window (ms)
--          5 retention (ms)   6 timeline cap
--          7 the batches (JSON), in order: [[groups, alerts Alertmanager left out], ...]
--          8 groups (JSON), batch after batch: [[key, digest, journey, {group labels},
--            alert count], ...]
--          9 alerts (JSON), in group order, batch after batch: [[fingerprint, status, starts (ms or ""),
--            ends (ms or ""), service, stage (or ""), region (or ""), impact class,
--            record length in bytes], ...]
--          10 the alerts' records (JSON each), concatenated in the same order; each is
--            stored as it is.
--          12 the most alerts an incident keeps (resolved ones beyond it go, oldest
--            first; 0: no limit)
--          11 the plan (JSON): {digest: [current incident id or false, id counter or
--            false]}, as the caller read them just before, for every digest the batch may
--            touch (its groups', and those of the incidents already holding its alerts).
--          13 how many of an incident's latest firings ``rc:<id>`` keeps
--          14 the owner index's other widths in use (ms, space-separated), as the caller
--            read them
-- If the plan is out of date (another batch moved an index meanwhile), or the owner index's
-- widths in use are not the ones given, nothing is written and the answer is "retry": read
-- again, declare again.
-- Records are never decoded here, and everything travels in a few arguments: decoding
-- every alert into nested tables, or one argument per field, cost most of the time.
-- Per incident, ``am:<id>`` maps fingerprint -> "status|starts|ends|first_seen|changed_at|
-- class" (what deduplication compares, and what the counts were taken under), ``ab:<id>`` fingerprint -> the record, and ``tl:<id>`` is
-- the timeline, kept out of the state document that every batch decodes and encodes.
-- ``rc:<id>`` lists the fingerprints of its latest firings (an alert that arrived firing
-- or fired again), newest first: a page of the incident's alerts shows those first, so a
-- reader of a large incident ranks these instead of all of them (redis.py load_alerts).
-- Returns a JSON list with, per batch, a list of one entry per incident the batch touched
-- (an alert may go to the incident that already holds it rather than to its group): {id,
-- journey, opened, reopened, changed, duplicates, ignored, alert_count}. ``id`` is false
-- for a group of resolved alerts nobody knew.

local P = ARGV[1]
local now = tonumber(ARGV[2])
local group_wait = tonumber(ARGV[3])
local reopen_window = tonumber(ARGV[4])
local retention = tonumber(ARGV[5])
-- The same two as given, in text: a number passed to redis.call or joined into a string is
-- formatted anew each time, which costs more than most of what a small batch does.
local now_s, retention_s = ARGV[2], ARGV[5]
local timeline_cap = tonumber(ARGV[6])
local batches = cjson.decode(ARGV[7])
local groups = cjson.decode(ARGV[8])
local alerts = cjson.decode(ARGV[9])
local max_alerts = tonumber(ARGV[12])
local recent_kept = tonumber(ARGV[13])
-- How far two Prometheus servers' clocks may be apart (ms), for times compared across them.
local CLOCKS = 60000
-- How long after its startsAt an alert may reach an episode already told and still be news
-- of how it began (ms): Prometheus's evaluation, then
-- Alertmanager's group_wait for a new group or group_interval for one under way. One that
-- came later was held back elsewhere (a silence expired, an inhibition ended, a route or
-- journeys.yaml changed): it joins, but it counts from when it came, or a warning of three
-- days would move the start three days back and take the cause with it.
local LATE = 900000
local due_key = KEYS[1]
local idx_key = P .. 'idx'
-- Incident id -> when its keys were last given a new lifetime (here or by commit.lua).
-- The index is scored by creation, for listing; this says when an entry is gone.
local alive_key = P .. 'alive'

local CHUNK = 1000  -- unpack() has a limit on how many values it can spread

local function note(id, kind, text, at)
  local tl_key = P .. 'tl:' .. id
  local entry = {at = at or now, kind = kind, text = text}
  local length = redis.call('RPUSH', tl_key, cjson.encode(entry))
  -- Keep the opening of the story and its latest part; count what falls out between.
  if length > timeline_cap then
    redis.call('LSET', tl_key, 10, '\0')  -- the first 10 entries stay
    redis.call('LREM', tl_key, 1, '\0')
    redis.call('HINCRBY', P .. 'inc:' .. id, 'tl_dropped', 1)
  end
end

local function hset_all(key, pairs)
  for i = 1, #pairs, 2 * CHUNK do
    redis.call('HSET', key, unpack(pairs, i, math.min(i + 2 * CHUNK - 1, #pairs)))
  end
end

-- fn on consecutive parts of list (whole groups of ``width``), each small enough to unpack.
local function each_chunk(list, width, fn)
  local step = width * CHUNK
  for i = 1, #list, step do
    fn({unpack(list, i, math.min(i + step - 1, #list))})
  end
end

local function hmget_all(key, fields)
  local out = {}
  for i = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

local function is_set(v)
  return v ~= nil and v ~= cjson.null
end

-- The severity in an impact class, '["stage", "severity", "tier"]' as Python writes it;
-- a batch has a handful of classes for its many alerts, so each is matched once.
local severities_of = {}
local function severity_of(class)
  local found = severities_of[class]
  if not found then
    found = string.match(class, '^%[".-", "(.-)", ') or ''
    severities_of[class] = found
  end
  return found
end

-- Whether a resolution (its endsAt) is of an episode that ended before the firing one
-- stored (its startsAt) began: over a minute before (CLOCKS: the times may come from two
-- Prometheus servers' clocks). Not by startsAt: Alertmanager keeps the earliest startsAt
-- of two copies of an alert (an HA Prometheus pair), so this episode's own resolution may
-- carry an earlier one. A resolution wrongly taken is undone by Alertmanager's next
-- notification of the alert firing; one wrongly dropped is never sent again. So one from
-- an episode that ended less than a minute before this began (a flap) still counts.
-- Copies without an endsAt (reconcile's) always count.
local function earlier_episode(ends, o_starts)
  local begun, ended = tonumber(o_starts), tonumber(ends)
  return begun ~= nil and ended ~= nil and ended + CLOCKS < begun
end

-- Whether a firing alert's startsAt says it began again: later than the one stored by more
-- than two Prometheus servers' clocks may be apart (CLOCKS); an HA peer's copy of the same
-- episode differs by seconds, and must not churn the alert's changes.
local function new_episode(starts, o_starts)
  local now_at, then_at = tonumber(starts), tonumber(o_starts)
  return now_at ~= nil and then_at ~= nil and now_at > then_at + CLOCKS
end

-- Whether a firing alert is a late copy of the notification of an episode this incident
-- holds as ended (an HA peer lagging behind, a retry), given what is stored of it (``old``):
-- held resolved, and its startsAt is the one that resolution carried, or it began before
-- the resolution ended (its endsAt, or when it reached us if that was earlier) by more than
-- two Prometheus servers' clocks may be apart (CLOCKS). An alert that fires again is given
-- a startsAt after its last resolution. A resolution with no startsAt or endsAt (the
-- receiver's own, reconcile's) tells nothing of episodes; copies without a startsAt
-- (reconcile's) always count.
local function late_firing(starts, old)
  -- Asked up to three times of every firing alert of a batch, most of them held firing
  -- already (each repeat of a group): those are told by their first bytes, unmatched.
  if not old or starts == '' or string.sub(old, 1, 9) ~= 'resolved|' then return false end
  local o_starts, o_ends, o_changed =
    string.match(old, '^resolved|([^|]*)|([^|]*)|[^|]*|([^|]*)|')
  if o_starts == starts then return true end
  local began, ended, stored = tonumber(starts), tonumber(o_ends), tonumber(o_changed)
  return o_starts ~= '' and began ~= nil and ended ~= nil
         and began + CLOCKS < math.min(ended, stored or ended)
end

local function count(map, key, by)
  local n = (map[key] or 0) + by
  if n > 0 then map[key] = n else map[key] = nil end
end

-- Each alert's record, cut out of the blob once.
local recs = {}
do
  local at = 1
  for n = 1, #alerts do
    recs[n] = string.sub(ARGV[10], at, at + alerts[n][9] - 1)
    at = at + alerts[n][9]
  end
end

-- An alert stays with the incident that first took it while that incident is live (open,
-- or resolved within reopen_window), even when a reload changed the journey or group
-- labels it would be placed under now: otherwise its resolution would land elsewhere and
-- the incident that paged for it would never resolve. The owner index maps fingerprint ->
-- the key's digest, in hashes of one width each (``owners:<width>:<n>``, n = now //
-- width): a call uses its retention as its width, looks its alerts up in this width's
-- bucket, the one before, and now's and the one before of every other width in use, and
-- writes an entry found only in another bucket into this one. An entry so lasts at least a
-- width after its alert was last seen, and a change of the retention (raised or lowered,
-- on some replicas or all) moves the entries over as their alerts come. ``owners:widths``
-- holds each width and when a call last used it: one is in use for two widths after that
-- (its entries may matter that long), and the caller must have declared the buckets of
-- every one in use. This width's bucket two before is unlinked (freed off the main thread)
-- once a 64th of now's has passed, so that a replica whose clock is behind by less still
-- finds it. A key per alert with its own lifetime, as before, cost more to write than the
-- rest of a new alert's bookkeeping.
-- When a call last said this width was in use (-inf: never); widths no longer in use.
local widths_in_use, widest, width_used, widths_gone = {}, retention, -math.huge, {}
do
  local declared = {}
  for w in string.gmatch(ARGV[14], '%d+') do declared[w] = true end
  local listed = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
  for i = 1, #listed, 2 do
    local w = tonumber(listed[i])
    if listed[i] == retention_s then
      width_used = tonumber(listed[i + 1])
    elseif tonumber(listed[i + 1]) >= now - 2 * w then
      if not declared[listed[i]] then return 'retry' end
      declared[listed[i]] = nil
      widths_in_use[#widths_in_use + 1] = listed[i]
      if w > widest then widest = w end
    else
      widths_gone[#widths_gone + 1] = listed[i]
    end
  end
  if next(declared) then return 'retry' end
end
local fingerprints = {}
for n = 1, #alerts do fingerprints[n] = alerts[n][1] end
local owners = hmget_all(KEYS[6], fingerprints)
-- Fingerprint -> digest pairs to write into this width's bucket at the end.
local claimed = {}
-- The other buckets, newest first: this width's one before, then each other width's two.
for b = 5, 7 + 2 * #widths_in_use do
  if b ~= 6 and b ~= 7 then
    local found = hmget_all(KEYS[b], fingerprints)
    for n = 1, #alerts do
      if not owners[n] and found[n] then
        owners[n] = found[n]
        claimed[#claimed + 1] = fingerprints[n]
        claimed[#claimed + 1] = found[n]
      end
    end
  end
end
-- The plan must still hold: every incident this batch can reach is one whose keys were
-- declared.
local plan = cjson.decode(ARGV[11])
for n = 1, #owners do
  if owners[n] and plan[owners[n]] == nil then return 'retry' end
end
-- Each digest's current incident id (or false), read once here and kept current below.
local current = {}
do
  local digests, plan_keys = {}, {}
  for digest in pairs(plan) do
    digests[#digests + 1] = digest
    plan_keys[#plan_keys + 1] = P .. 'key:' .. digest
    plan_keys[#plan_keys + 1] = P .. 'seq:' .. digest
  end
  for i = 1, #plan_keys, CHUNK do
    local part = redis.call('MGET', unpack(plan_keys, i, math.min(i + CHUNK - 1, #plan_keys)))
    for j = 1, #part, 2 do
      local digest = digests[(i + j) / 2]
      local known = plan[digest]
      if part[j] ~= known[1] or part[j + 1] ~= known[2] then return 'retry' end
      current[digest] = part[j]
    end
  end
end

-- Each incident's state, decoded once per call and encoded once at its end (its id ->
-- the state, or false for none); which incidents the call touched, in order, and which
-- it changed.
local states, touched, dirty = {}, {}, {}
-- When each incident's keys were last given a new lifetime (the ``kept`` field).
local kept = {}
-- Each incident's version as read (0 for one opened here), written one up if it changed.
local versions = {}
-- Each incident's updated_at as read (nil for one opened here).
local updated_before = {}
local function state_of(id)
  if states[id] == nil then
    local got = redis.call('HMGET', P .. 'inc:' .. id, 'state', 'kept', 'ver')
    states[id] = got[1] and cjson.decode(got[1]) or false
    kept[id] = tonumber(got[2]) or 0
    versions[id] = tonumber(got[3]) or 0
    updated_before[id] = states[id] and tonumber(states[id].updated_at) or nil
  end
  return states[id] or nil
end
-- Renewing an incident's eight lifetimes costs more than the rest of a small batch: they
-- are renewed when a 64th of the retention has passed since the last time, so its keys
-- expire between 63/64 of the retention and the retention after its last change.
local renew_every = math.floor(retention / 64)

-- {key, digest, journey, group labels} of the live incident of a digest, or false.
local function live_header(digest)
  local owner_id = current[digest]
  local o = owner_id and state_of(owner_id)
  if o and (o.status == 'open' or now - o.resolved_at <= reopen_window) then
    return {o.key, digest, o.journey, o.group_labels}
  end
  return false
end

-- One batch: groups first_group..last_group, whose alerts start after alert first_alert - 1.
local function apply(first_group, last_group, first_alert, truncated)
  local placed, order, live = {}, {}, {}
  local a_at = first_alert - 1
  for gi = first_group, last_group do
    local g = groups[gi]
    for n = a_at + 1, a_at + g[5] do
      local header = g
      local owner = owners[n]
      if owner and owner ~= g[2] then
        if live[owner] == nil then live[owner] = live_header(owner) end
        header = live[owner] or g
      end
      local entry = placed[header[2]]
      if not entry then
        entry = {header = header, members = {}}
        placed[header[2]] = entry
        order[#order + 1] = entry
      end
      entry.members[#entry.members + 1] = n
    end
    a_at = a_at + g[5]
  end

  local results = {}
  for _, entry in ipairs(order) do
    local key, digest, journey, group_labels = unpack(entry.header, 1, 4)
    local members = entry.members
    local n_alerts = #members

    local key_key = P .. 'key:' .. digest
    local id = current[digest]
    local st = id and state_of(id)

    local fps = {}
    for i, n in ipairs(members) do fps[i] = alerts[n][1] end
    local stored = st and hmget_all(P .. 'am:' .. id, fps) or {}

    -- Firing for real: not a late copy of the firing notification of an alert this
    -- incident already holds as resolved (an HA peer lagging behind must not reopen it).
    local has_firing = false
    for i, n in ipairs(members) do
      local a = alerts[n]
      if a[2] == 'firing' and not late_firing(a[3], stored[i]) then
        has_firing = true
        break
      end
    end

    -- When the batch's firing alerts started, by Alertmanager's startsAt (a missing, zero
    -- or future one says nothing): the incident started with the earliest.
    -- A late copy of an alert held resolved (above) says nothing of when this began.
    -- Reopening an incident people were told of, an alert that comes late (LATE) was held
    -- back elsewhere, as it would be in the episode told: it counts from when it came, or
    -- the new episode would start before the last one ended, its causes searched hours
    -- back.
    local reopens_told = st and st.status == 'resolved' and is_set(st.notified_at)
                         and is_set(st.resolved_at) and now - st.resolved_at <= reopen_window
    local batch_start = nil
    for i, n in ipairs(members) do
      local a = alerts[n]
      local starts = tonumber(a[3])
      if reopens_told and starts and starts > 0 and now - starts > LATE then starts = now end
      if a[2] == 'firing' and not late_firing(a[3], stored[i]) and starts and starts > 0
         and starts <= now
         and (batch_start == nil or starts < batch_start) then
        batch_start = starts
      end
    end

    -- A resolved incident outside its reopen window is history: a new storm gets a new id.
    if st and st.status == 'resolved' and has_firing and now - st.resolved_at > reopen_window then
      st = nil
      stored = {}
    end

    local res = {id = false, journey = journey, opened = false, reopened = false, changed = 0,
                 duplicates = 0, ignored = 0, alert_count = 0}
    if not st and not has_firing then
      -- Resolutions for alerts no incident holds (expired, or never seen): nothing to resolve.
      res.ignored = n_alerts
    else
      if not st then
        local seq_key = P .. 'seq:' .. digest
        local n = redis.call('INCR', seq_key)
        if n == 1 then
          -- A counter that is not there (none yet, or it expired with the last incident it
          -- numbered) starts at now, in seconds: an id is never given twice, even a
          -- retention after the last one is gone from here, for PagerDuty's dedup_key, the
          -- Jira label and an action's Idempotency-Key remember it for good
          -- (redis.py _planned_keys foresees it).
          n = math.floor(now / 1000)
          redis.call('SET', seq_key, string.format('%d', n))
        end
        id = journey .. '-' .. digest .. '-' .. string.format('%d', n)
        st = {id = id, key = key, digest = digest, journey = journey,
              group_labels = group_labels, status = 'open', created_at = now,
              updated_at = now, first_firing_at = now, last_change_at = now,
              started_at = batch_start or now,
              reopened_count = 0, alert_count = 0, firing_count = 0, pending_resolved = 0,
              services = {}, stages = {}, regions = {}, firing_classes = {}, firing_services = {},
              firing_severities = {}, service_starts = {},
              truncated_alerts = 0, pending = 'open', blips = 0, feedback = {}}
        states[id] = st
        kept[id] = 0
        versions[id] = 0
        redis.call('SET', key_key, id, 'PX', retention_s)
        current[digest] = id
        redis.call('ZADD', idx_key, now_s, id)
        redis.call('ZADD', due_key, now + group_wait, id)
        note(id, 'opened', 'incident opened')
        res.opened = true
      elseif st.status == 'resolved' and has_firing then
        -- The episode ending was told to people: what its figures are read from is kept,
        -- for as long as the new one is not told (it may be a blip nobody hears of). An
        -- untold episode ending keeps the last told one's.
        if is_set(st.notified_at) and st.notified_at >= st.first_firing_at then
          st.told = {response = st.response, started_at = st.started_at,
                     first_firing_at = st.first_firing_at, notified_at = st.notified_at,
                     resolved_at = st.resolved_at, last_change_at = st.last_change_at,
                     change_to_detection_s = st.change_to_detection_s}
        end
        -- Not before the resolve it undoes, whatever the replicas' clocks say: on a replica
        -- whose clock is behind the resolver's, the new episode would start before the last
        -- one ended, and the figures read from their order would lose it (its minutes
        -- degraded). Its alerts' changes are stamped from then on (stamp, below).
        local reopened_at = math.max(now, tonumber(st.resolved_at))
        st.status = 'open'
        st.resolved_at = nil
        st.first_firing_at = reopened_at
        st.last_change_at = math.max(tonumber(st.last_change_at) or 0, reopened_at)
        st.started_at = batch_start or reopened_at
        st.service_starts = {}
        st.pending_resolved = 0
        st.reopened_count = (st.reopened_count or 0) + 1
        st.pending = 'reopen'
        -- A new episode: who acknowledged or resolved the last one does not answer this one.
        st.response = nil
        redis.call('ZADD', due_key, reopened_at + group_wait, id)
        note(id, 'reopened', 'incident reopened: alerts firing again', reopened_at)
        res.reopened = true
      end
      res.id = id

      -- Whether this episode's people were told, or, for a reopen not yet told, the last
      -- episode's: from then on an alert that comes late (LATE) counts from when it came.
      local told = is_set(st.notified_at)
                   and (st.notified_at >= st.first_firing_at or st.pending == 'reopen')
      local meta_key = P .. 'am:' .. id
      local body_key = P .. 'ab:' .. id
      -- What this call's changes are stamped with: never before the incident's last change,
      -- so that the stamps follow the order in which changes reach Redis even when the
      -- replicas' clocks disagree (rc:<id> relies on it, redis.py _recent_alerts).
      local stamp, stamp_s = now, now_s
      local last_change = tonumber(st.last_change_at)
      if last_change and last_change > now then
        stamp, stamp_s = last_change, string.format('%d', last_change)
      end
      local services, stages, regions = st.services, st.stages, st.regions
      local classes, firing_services = st.firing_classes, st.firing_services
      -- For the upstream ranking without reading the alerts: firing alerts per service and
      -- severity, and when each service's alerts started (Alertmanager's startsAt).
      if type(st.firing_severities) ~= 'table' then st.firing_severities = {} end
      if type(st.service_starts) ~= 'table' then st.service_starts = {} end
      local severities, service_starts = st.firing_severities, st.service_starts
      local metas, bodies, latest = {}, {}, {}
      -- The incident's resolved alerts by when they resolved (ar:<id>): the ones dropped
      -- first when it holds more than max_alerts.
      local resolved_now, firing_again = {}, {}
      -- The fingerprints that fired here (new, or again), for rc:<id>.
      local recent = {}
      -- Until the first notification of this (re)opening, count the alerts that resolved:
      -- they came and went within group_wait (blips).
      local gathering = is_set(st.pending)
      for i, n in ipairs(members) do
        local a = alerts[n]
        local fp, status, starts, ends = a[1], a[2], a[3], a[4]
        local service, stage, region, class = a[5], a[6], a[7], a[8]
        local record = recs[n]
        -- The same fingerprint twice in one batch: the second compares with the first.
        local old = latest[fp] or stored[i]
        if stored[i] and not owners[n] then
          -- Held here, but not in the index (an incident can outlive two retentions, or the
          -- retention changed, which numbers the buckets anew): said again, or after a
          -- reload the alert's next change could land in another incident.
          claimed[#claimed + 1] = fp
          claimed[#claimed + 1] = digest
        end
        local o_status, o_starts, o_ends, o_first, o_changed, o_class
        if old then
          -- The class goes last: it is JSON and may hold any character.
          o_status, o_starts, o_ends, o_first, o_changed, o_class =
            string.match(old, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
          -- An alert the incident holds keeps the stage and class it was counted under
          -- there: a reload that renamed or moved its stage, or moved its service to
          -- another journey, applies to new alerts, and must not re-score (and re-page)
          -- the incident that paged for it when Alertmanager repeats it.
          -- Only its stage: a severity or tier scoring.* weighs now (a reload) is weighed.
          stage = string.match(o_class, '^%["(.-)", ') or ''
          class = '["' .. stage .. '", ' .. (string.match(class, '^%[".-", (.*)$') or '"", ""]')
        end
        -- A resolution of an alert this incident let go (max_alerts): the owner index
        -- still names this key for it. Taken in again it would be counted twice and move
        -- last_change_at, putting the resolve off at every repeat by Alertmanager.
        local dropped = not old and status == 'resolved' and owners[n] == digest
                        and (tonumber(st.alerts_dropped) or 0) > 0
        if dropped or (status == 'firing' and late_firing(starts, old))
           or (old and o_status == 'firing' and status == 'resolved'
               and earlier_episode(ends, o_starts)) then
          -- A late copy of the firing notification of an episode already resolved, or of
          -- the resolution of an episode before the one firing now (an HA peer lagging, a
          -- retry), or of one let go: none says anything about the alert now.
          res.duplicates = res.duplicates + 1
        else
          -- The latest wording of annotations wins, even when nothing else changed.
          bodies[#bodies + 1] = fp
          bodies[#bodies + 1] = record
          if old and o_status == status and o_starts == starts and o_ends == ends
             and o_class == class then
            -- A retry, or an HA peer's copy.
            res.duplicates = res.duplicates + 1
          else
            local changed_at = stamp
            if gathering and status == 'resolved' and o_status ~= 'resolved' then
              st.pending_resolved = (st.pending_resolved or 0) + 1
            elseif gathering and status == 'firing' and o_status == 'resolved'
                   and tonumber(o_changed) >= st.first_firing_at then
              st.pending_resolved = (st.pending_resolved or 0) - 1
            end
            if not old then
              st.alert_count = st.alert_count + 1
              claimed[#claimed + 1] = fp
              claimed[#claimed + 1] = digest
            else
              if o_status == 'firing' then
                -- Take it out under the class it was counted in (a reload may change it).
                st.firing_count = st.firing_count - 1
                count(classes, o_class, -1)
                count(firing_services, service, -1)
                count(severities, service .. '|' .. severity_of(o_class), -1)
                -- A service that stopped firing starts afresh when it fires again.
                if not firing_services[service] then service_starts[service] = nil end
              end
              -- Its status held: it changed when it last did. Unless it fires with another
              -- startsAt: a new episode whose resolution never came (the receiver was
              -- down), news now; a reconcile answer read before it must not resolve it.
              -- (An HA peer's copy of the same episode says a startsAt seconds apart: no news.)
              if o_status == status and (status ~= 'firing' or not new_episode(starts, o_starts)) then
                changed_at = o_changed
              end
            end
            if status == 'firing' then
              st.firing_count = st.firing_count + 1
              count(classes, class, 1)
              count(firing_services, service, 1)
              count(severities, service .. '|' .. severity_of(class), 1)
              local at = tonumber(starts)
              if at and at > 0 and at <= now then
                -- When it reached the incident: one firing already (an HA peer's copy
                -- with another startsAt) is judged by its arrival then; one arriving now
                -- came after people were told, whatever the replicas' clocks say.
                local came = tonumber(o_status == 'firing' and o_changed or changed_at)
                if told and (came == stamp or came >= st.notified_at) and came - at > LATE then
                  at = came
                elseif is_set(st.started_at) and at < st.started_at then
                  st.started_at = at  -- an alert that started earlier joined
                end
                if at < (tonumber(service_starts[service]) or math.huge) then
                  service_starts[service] = at
                end
              end
            end
            -- A resolution coming late to a resolved incident (an alert that fired and
            -- resolved between two of Alertmanager's flushes) is not when it resolved.
            if changed_at == stamp and (status == 'firing' or st.status ~= 'resolved') then
              st.last_change_at = stamp
              if status == 'firing' then recent[#recent + 1] = fp end
            end
            local changed_s = changed_at == stamp and stamp_s or changed_at
            local meta = status .. '|' .. starts .. '|' .. ends .. '|' .. (o_first or now_s) ..
                         '|' .. changed_s .. '|' .. class
            latest[fp] = meta
            if status == 'resolved' and o_status ~= 'resolved' then
              resolved_now[#resolved_now + 1] = changed_s
              resolved_now[#resolved_now + 1] = fp
            elseif status == 'firing' and o_status == 'resolved' then
              firing_again[#firing_again + 1] = fp
            end
            metas[#metas + 1] = fp
            metas[#metas + 1] = meta
            if not is_set(services[service]) then
              services[service] = now
              if not res.opened then
                note(id, 'service_joined', 'service ' .. service .. ' joined')
              end
            end
            if stage ~= '' and not is_set(stages[stage]) then
              stages[stage] = now
              if not res.opened then
                note(id, 'stage_joined', 'stage ' .. stage .. ' affected')
              end
            end
            if region ~= '' and not is_set(regions[region]) then
              regions[region] = now
            end
            res.changed = res.changed + 1
          end
        end
      end
      hset_all(body_key, bodies)
      hset_all(meta_key, metas)
      local resolved_key = P .. 'ar:' .. id
      each_chunk(firing_again, 1, function(part) redis.call('ZREM', resolved_key, unpack(part)) end)
      each_chunk(resolved_now, 2, function(part) redis.call('ZADD', resolved_key, unpack(part)) end)
      if #resolved_now > 0 and now - kept[id] < renew_every then
        -- Its first resolved alert creates the set, and no renewal below gives it a lifetime.
        redis.call('PEXPIRE', resolved_key, retention_s)
      end
      if #recent > 0 then
        local recent_key = P .. 'rc:' .. id
        local length = 0
        each_chunk(recent, 1, function(part)
          length = redis.call('LPUSH', recent_key, unpack(part))
        end)
        if length == #recent and now - kept[id] < renew_every then
          redis.call('PEXPIRE', recent_key, retention_s)  -- created here, as ar: above
        end
        -- Trimmed once it is a fifth past what it keeps: not at every call.
        if length > recent_kept + recent_kept / 5 then
          redis.call('LTRIM', recent_key, 0, recent_kept - 1)
        end
      end
      -- An incident that keeps getting traffic would otherwise keep every alert it ever
      -- saw; firing alerts always stay. Every field of am: was counted in alert_count and
      -- every one taken out in alerts_dropped, so the hash is only asked for its length
      -- once their difference is past the limit (a call fewer per incident and batch).
      if max_alerts > 0
         and st.alert_count - (tonumber(st.alerts_dropped) or 0) > max_alerts then
        local over = math.min(redis.call('HLEN', meta_key) - max_alerts, 10 * CHUNK)
        if over > 0 then
          local victims = redis.call('ZRANGE', resolved_key, 0, over - 1)
          if #victims > 0 then
            each_chunk(victims, 1, function(part)
              redis.call('HDEL', meta_key, unpack(part))
              redis.call('HDEL', body_key, unpack(part))
              redis.call('ZREM', resolved_key, unpack(part))
            end)
            if (tonumber(st.alerts_dropped) or 0) == 0 then
              note(id, 'alerts_dropped', 'more than ' .. max_alerts ..
                   ' alerts: resolved ones are dropped, oldest first')
            end
            st.alerts_dropped = (tonumber(st.alerts_dropped) or 0) + #victims
            dirty[id] = true
          end
        end
      end

      -- Counted once: an HA peer's copy of the same batch changes nothing.
      if truncated > 0 and res.changed > 0 then
        st.truncated_alerts = (st.truncated_alerts or 0) + truncated
        note(id, 'truncated', 'Alertmanager left out ' .. truncated ..
             ' alerts of a batch (max_alerts); they arrive with later batches')
      end

      if res.changed > 0 or res.opened or res.reopened then
        -- Later than the last change even within one millisecond (two calls can share
        -- one): the figures read an incident's alerts again only when it moves
        -- (receiver/outcomes/stats.py).
        local before = updated_before[id]
        st.updated_at = (before and before >= now) and before + 1 or now
        dirty[id] = true
      end
      if not touched[id] then
        touched[id] = digest
        touched[#touched + 1] = id
      end
      res.alert_count = st.alert_count
    end
    results[#results + 1] = res
  end
  return results
end

local answers = {}
do
  local g_at, a_at = 0, 1
  for b, batch in ipairs(batches) do
    answers[b] = apply(g_at + 1, g_at + batch[1], a_at, batch[2])
    for gi = g_at + 1, g_at + batch[1] do a_at = a_at + groups[gi][5] end
    g_at = g_at + batch[1]
  end
end

for _, id in ipairs(touched) do
  local st, digest = states[id], touched[id]
  local inc_key = P .. 'inc:' .. id
  if dirty[id] then
    redis.call('HSET', inc_key, 'state', cjson.encode(st),
               'ver', string.format('%d', versions[id] + 1))
    if st.status == 'open' and is_set(st.notified_at) and not is_set(st.pending) then
      -- Already notified: let the scheduler judge the change now (it may hold it back
      -- until group_interval); never push an earlier due time later.
      redis.call('ZADD', due_key, 'LT', now_s, id)
    end
  end
  if now - kept[id] >= renew_every then
    redis.call('HSET', inc_key, 'kept', now_s)
    redis.call('PEXPIRE', inc_key, retention_s)
    redis.call('ZADD', alive_key, now_s, id)
    redis.call('PEXPIRE', P .. 'am:' .. id, retention_s)
    redis.call('PEXPIRE', P .. 'ab:' .. id, retention_s)
    redis.call('PEXPIRE', P .. 'ar:' .. id, retention_s)
    redis.call('PEXPIRE', P .. 'tl:' .. id, retention_s)
    redis.call('PEXPIRE', P .. 'rc:' .. id, retention_s)
    redis.call('PEXPIRE', P .. 'key:' .. digest, retention_s)
    -- The id counter must outlive every incident it numbered, or a later incident of the
    -- same key would be given an id still in use.
    redis.call('PEXPIRE', P .. 'seq:' .. digest, retention_s)
  end
end

if #claimed > 0 then
  hset_all(KEYS[6], claimed)
  -- Needed until the end of the next bucket: unlinked then by a later call (below), or,
  -- if none comes, gone on its own a little after (the unlink frees it off the main
  -- thread; an expiry frees it in place). A lifetime from now, as every other one here:
  -- ``now`` is the caller's clock, not Redis's.
  redis.call('PEXPIRE', KEYS[6],
             (math.floor(now / retention) + 2) * retention + 2 * renew_every - now)
end
-- Said once a 64th of the width has passed since the last time, as the incidents' lifetimes
-- are renewed: that this width is in use as of now (others read its buckets for two widths
-- after, at least 2 - 1/64 widths after its last call), that the list lives as long as the
-- widest's buckets may (a new index, redis.py _other_widths, begins once it is gone), and
-- that this width's bucket two before goes, and widths no longer in use with it.
if now - width_used >= renew_every then
  redis.call('ZADD', KEYS[7], now_s, retention_s)
  if #widths_gone > 0 then redis.call('ZREM', KEYS[7], unpack(widths_gone)) end
  redis.call('PEXPIRE', KEYS[7], 3 * widest)
  if now % retention >= renew_every then redis.call('UNLINK', KEYS[4]) end
end

-- Index entries of incidents long gone; the incidents themselves expire on their own. Not
-- by creation time: a storm that lasts longer than the retention is still an incident.
local gone = redis.call('ZRANGEBYSCORE', alive_key, '-inf', now - retention, 'LIMIT', 0, CHUNK)
if #gone > 0 then
  redis.call('ZREM', idx_key, unpack(gone))
  redis.call('ZREM', alive_key, unpack(gone))
end
-- cjson writes an empty table as {}; a batch that touched nothing answers [].
for b = 1, #answers do
  if #answers[b] == 0 then answers[b] = cjson.null end
end
return cjson.encode(answers)
