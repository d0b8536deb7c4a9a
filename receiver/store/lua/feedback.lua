-- Append one feedback record to an incident. KEYS[1] the incident hash. ARGV: record JSON.
-- Returns 0 for an unknown incident.
local raw = redis.call('HGET', KEYS[1], 'state')
if not raw then return 0 end
local st = cjson.decode(raw)
if type(st.feedback) ~= 'table' then st.feedback = {} end
st.feedback[#st.feedback + 1] = cjson.decode(ARGV[1])
-- Every batch decodes the state document: keep the latest 50 records of feedback.
while #st.feedback > 50 do table.remove(st.feedback, 1) end
redis.call('HSET', KEYS[1], 'state', cjson.encode(st))
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1
