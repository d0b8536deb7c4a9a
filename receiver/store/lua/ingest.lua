-- Apply one webhook batch atomically: every alert lands in the one incident of its key.
--
-- KEYS[1]  the due set; every other key shares its {hash tag}, so the script runs unchanged
--          on Redis Cluster.
-- ARGV[1]  key prefix, e.g. "{jr}:"
-- ARGV[2]  now (ms)          ARGV[3] group_wait (ms)   ARGV[4] reopen_window (ms)
-- ARGV[5]  retention (ms)    ARGV[6] timeline cap
-- ARGV[7]  batch JSON: {"truncated": n, "groups": [{"key", "digest", "journey",
--          "group_labels", "alerts": [{fp, status, labels, annotations, starts_at, ends_at,
--          generator_url, stage, service, severity, region}]}]}
-- Returns a JSON list, one entry per group: {id, opened, reopened, changed, duplicates,
-- ignored, alert_count}. ``id`` is false for a group of resolved alerts nobody knew.

local P = ARGV[1]
local now = tonumber(ARGV[2])
local group_wait = tonumber(ARGV[3])
local reopen_window = tonumber(ARGV[4])
local retention = tonumber(ARGV[5])
local timeline_cap = tonumber(ARGV[6])
local batch = cjson.decode(ARGV[7])
local due_key = KEYS[1]
local idx_key = P .. 'idx'

local function note(st, kind, text)
  local tl = st.timeline
  tl[#tl + 1] = {at = now, kind = kind, text = text}
  -- Keep the opening of the story and its latest part; count what falls out between.
  if #tl > timeline_cap then
    table.remove(tl, 11)  -- TIMELINE_HEAD (10) + 1, see records.py
    st.timeline_dropped = (st.timeline_dropped or 0) + 1
  end
end

local function is_set(v)
  return v ~= nil and v ~= cjson.null
end

local results = {}
for _, g in ipairs(batch.groups) do
  local key_key = P .. 'key:' .. g.digest
  local id = redis.call('GET', key_key)
  local st = nil
  if id then
    local raw = redis.call('HGET', P .. 'inc:' .. id, 'state')
    if raw then st = cjson.decode(raw) end
  end

  local has_firing = false
  for _, a in ipairs(g.alerts) do
    if a.status == 'firing' then has_firing = true break end
  end

  -- A resolved incident outside its reopen window is history: a new storm gets a new id.
  if st and st.status == 'resolved' and has_firing and now - st.resolved_at > reopen_window then
    st = nil
  end

  local res = {id = false, opened = false, reopened = false, changed = 0, duplicates = 0,
               ignored = 0, alert_count = 0}
  if not st and not has_firing then
    -- Resolutions for alerts no incident holds (expired, or never seen): nothing to resolve.
    res.ignored = #g.alerts
  else
    if not st then
      id = g.journey .. '-' .. g.digest .. '-' .. redis.call('INCR', P .. 'seq:' .. g.digest)
      st = {id = id, key = g.key, digest = g.digest, journey = g.journey,
            group_labels = g.group_labels, status = 'open', created_at = now,
            updated_at = now, first_firing_at = now, reopened_count = 0, alert_count = 0,
            firing_count = 0, services = {}, stages = {}, regions = {}, timeline = {},
            timeline_dropped = 0, truncated_alerts = 0, pending = 'open', blips = 0,
            feedback = {}}
      redis.call('SET', key_key, id, 'PX', retention)
      redis.call('PEXPIRE', P .. 'seq:' .. g.digest, retention)
      redis.call('ZADD', idx_key, now, id)
      redis.call('ZADD', due_key, now + group_wait, id)
      note(st, 'opened', 'incident opened')
      res.opened = true
    elseif st.status == 'resolved' and has_firing then
      st.status = 'open'
      st.resolved_at = nil
      st.first_firing_at = now
      st.reopened_count = (st.reopened_count or 0) + 1
      st.pending = 'reopen'
      redis.call('ZADD', due_key, now + group_wait, id)
      note(st, 'reopened', 'incident reopened: alerts firing again')
      res.reopened = true
    end
    res.id = id

    local alerts_key = P .. 'alerts:' .. id
    for _, a in ipairs(g.alerts) do
      local old_raw = redis.call('HGET', alerts_key, a.fp)
      local old = old_raw and cjson.decode(old_raw)
      local stale = old and old.status == 'resolved' and a.status == 'firing'
                    and old.starts_at == a.starts_at
      local same = old and old.status == a.status and old.starts_at == a.starts_at
                   and old.ends_at == a.ends_at
      if same or stale then
        -- A retry, an HA peer's copy, or a late firing copy of an alert already resolved.
        res.duplicates = res.duplicates + 1
      else
        local rec = {fp = a.fp, status = a.status, labels = a.labels,
                     annotations = a.annotations, starts_at = a.starts_at,
                     ends_at = a.ends_at, generator_url = a.generator_url, stage = a.stage,
                     service = a.service, severity = a.severity,
                     first_seen = old and old.first_seen or now, changed_at = now}
        if not old then
          st.alert_count = st.alert_count + 1
          if a.status == 'firing' then st.firing_count = st.firing_count + 1 end
        elseif old.status ~= a.status then
          if a.status == 'firing' then
            st.firing_count = st.firing_count + 1
          else
            st.firing_count = st.firing_count - 1
          end
        else
          rec.changed_at = old.changed_at
        end
        if not is_set(st.services[a.service]) then
          st.services[a.service] = now
          if not res.opened then
            note(st, 'service_joined', 'service ' .. a.service .. ' joined')
          end
        end
        local stage = is_set(a.stage) and a.stage or nil
        if stage and not is_set(st.stages[stage]) then
          st.stages[stage] = now
          if not res.opened then
            note(st, 'stage_joined', 'stage ' .. stage .. ' affected')
          end
        end
        if a.region ~= '' and not is_set(st.regions[a.region]) then
          st.regions[a.region] = now
        end
        redis.call('HSET', alerts_key, a.fp, cjson.encode(rec))
        res.changed = res.changed + 1
      end
    end

    -- Counted once: an HA peer's copy of the same batch changes nothing.
    if batch.truncated > 0 and res.changed > 0 then
      st.truncated_alerts = (st.truncated_alerts or 0) + batch.truncated
      note(st, 'truncated', 'Alertmanager left out ' .. batch.truncated ..
           ' alerts of a batch (max_alerts); they arrive with later batches')
    end

    local inc_key = P .. 'inc:' .. id
    if res.changed > 0 or res.opened or res.reopened then
      st.updated_at = now
      redis.call('HSET', inc_key, 'state', cjson.encode(st))
      redis.call('HINCRBY', inc_key, 'ver', 1)
      if st.status == 'open' and is_set(st.notified_at) and not is_set(st.pending) then
        -- Already notified: let the scheduler judge the change now (it may hold it back
        -- until group_interval); never push an earlier due time later.
        redis.call('ZADD', due_key, 'LT', now, id)
      end
    end
    redis.call('PEXPIRE', inc_key, retention)
    redis.call('PEXPIRE', alerts_key, retention)
    redis.call('PEXPIRE', key_key, retention)
    res.alert_count = st.alert_count
  end
  results[#results + 1] = res
end

-- Index entries of incidents long gone; the incidents themselves expire on their own.
redis.call('ZREMRANGEBYSCORE', idx_key, '-inf', now - retention)
return cjson.encode(results)
