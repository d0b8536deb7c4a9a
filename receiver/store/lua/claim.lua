-- uses: answers
-- Claim incidents whose decision is due, so that exactly one replica acts on each.
--
-- KEYS: 1 the due set, 2 the claims hash (incident id -> "<token>|<held until, ms>"), 3
-- this claim's answer (claimed:<token>).
-- ARGV: now (ms), lease (ms), limit, claim token.
-- A claimed incident's due time moves to now + lease: if this replica dies, another one
-- picks it up when the lease runs out. An incident another replica still holds is not
-- taken from it (a batch may have made it due again meanwhile; the holder's commit sees
-- that and puts it due again): it is looked at when that lease ends. Claims live in their
-- own hash, not in the incident, so that every key this script touches is one it was
-- given (Redis Cluster); an incident that expired meanwhile is claimed all the same and
-- let go by the scheduler, which finds nothing to load (release.lua without a due time).
-- A call that claims something keeps its answer for the lease (shared/answers.lua).
-- Returns {id, due ms} pairs, flattened.

local now = tonumber(ARGV[1])
local until_ms = now + tonumber(ARGV[2])
local again = kept_answer(KEYS[3], now)
if again then return again end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                      tonumber(ARGV[3]))
local claimed = {}
if #due == 0 then return claimed end
local CHUNK = 1000  -- unpack() has a limit on how many values it can spread
-- cmd on key with the items of list as arguments, a few calls if there are many of them;
-- returns the replies joined. width: items that must go in the same call (score, member).
local function spread(cmd, key, list, width)
  local out = {}
  for i = 1, #list, width * CHUNK do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + width * CHUNK - 1, #list)))
    if type(part) == 'table' then
      for j = 1, #part do out[#out + 1] = part[j] end
    end
  end
  return out
end
local ids = {}
for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
-- One read, one due-set write and one claims write, however many incidents are due.
local held = spread('HMGET', KEYS[2], ids, 1)
local moved, taken = {}, {}
local claim = ARGV[4] .. '|' .. string.format('%d', until_ms)
for n, id in ipairs(ids) do
  local held_until = held[n] and tonumber(string.match(held[n], '|(%d+)$')) or 0
  if held_until > now then
    moved[#moved + 1] = held_until
  else
    moved[#moved + 1] = until_ms
    taken[#taken + 1] = id
    taken[#taken + 1] = claim
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = due[2 * n]
  end
  moved[#moved + 1] = id
end
spread('ZADD', KEYS[1], moved, 2)
spread('HSET', KEYS[2], taken, 2)
return keep_answer(KEYS[3], claimed, until_ms, ARGV[2])
