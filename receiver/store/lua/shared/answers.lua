-- A claim's answer, kept under its token for its lease (by the caller's clock, as the
-- lease itself). A call with the same token gets it again: the caller sends one when the
-- reply of the first was lost (a timeout, a failover: receiver/store/tokens.py), and a
-- Redis Cluster client resends a call on its own. Claimed afresh instead, what the first
-- call took would wait its lease out.

-- The answer kept at key while its lease runs at now, else nil.
local function kept_answer(key, now)
  local kept = redis.call('GET', key)
  if not kept then return nil end
  local until_ms, answer = string.match(kept, '^(%d+)|(.*)$')
  if tonumber(until_ms) > now then return cjson.decode(answer) end
  return nil
end

-- answer (a list), kept at key until until_ms if it took anything.
local function keep_answer(key, answer, until_ms, lease_ms)
  if #answer > 0 then
    redis.call('SET', key, string.format('%d', until_ms) .. '|' .. cjson.encode(answer),
               'PX', math.max(1, tonumber(lease_ms)))
  end
  return answer
end
