"""The Lua scripts of a cluster node: each one is one atomic step in Redis.

Keys (``P`` is ``ServerConfig.redis_prefix``; see ``docs/cluster.md``):

``P:epoch``                 the epoch of every log (a string; missing: the data set was lost)
``P:seq:ROOM``              the room's last event id (INCR)
``P:log:ROOM``              the room's log: a stream, entry id ``<eventId>-0``, fields
                            ``t`` (wall-clock seconds), ``p`` (the event payload, JSON),
                            ``k`` (the event name) and ``e`` (its epoch: entries of an
                            older epoch stay after a rollback and are never served)
``P:dd:LEN:USER:MSGID``     the dedupe entry of a committed message (expires: ``dedupe_ttl``)
``P:pres:ROOM``             presence: a set of ``NODE|USER``
``P:noderooms:NODE``        the rooms where NODE has presence entries
``P:node:NODE``             NODE is alive while this key exists (heartbeat, ``node_ttl``)
``P:nodes``                 every node that ever registered (swept when dead)
``P:rl:KIND:USER``          a token bucket (``tokens``, ``ts``), expires when full
channel ``P:fanout:DB``     every event for every room, in commit order (DB: the
                            database number; channels are not per database)

A fan-out message is a JSON header line, ``\\n``, then the envelope (JSON):
``["E", room, eventId, times, epoch]`` for a logged event, ``["P", room, skipUser,
excludeClientId]`` for one that is not logged (presence, typing, receipts).

Node ids must not contain ``|``; user ids may (the first ``|`` splits).
"""

from __future__ import annotations

__all__ = [
    "COMMIT",
    "ENSURE_EPOCH",
    "JOIN",
    "LEAVE",
    "MARK",
    "MEMBERS",
    "PAGE",
    "RATE",
    "REPLACE_EPOCH",
    "RESET",
    "SWEEP",
]

_PRUNE = """
local function prune(stream, now, max_count, max_age)
  redis.call('XTRIM', stream, 'MAXLEN', max_count)
  local horizon = now - max_age
  while true do
    local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #batch == 0 then return end
    for _, entry in ipairs(batch) do
      if tonumber(entry[2][2]) >= horizon then
        redis.call('XTRIM', stream, 'MINID', entry[1])
        return
      end
    end
    local n = tonumber(string.match(batch[#batch][1], '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', (n + 1) .. '-0')
  end
end
"""

_ROLLED_BACK = """
-- The data set went back to an older snapshot (a crash between two saves, a lagging
-- replica promoted) when a room's counter is below an event id a node already saw:
-- the ids after it would be given out again in the same epoch.
local function rolled_back(seq_key, mark)
  if tonumber(mark) == 0 then return false end
  return tonumber(redis.call('GET', seq_key) or '0') < tonumber(mark)
end
"""

_LIVE = """
local function live_users(key, prefix)
  local users, alive = {}, {}
  for _, m in ipairs(redis.call('SMEMBERS', key)) do
    local sep = string.find(m, '|', 1, true)
    if sep then
      local node = string.sub(m, 1, sep - 1)
      if alive[node] == nil then
        alive[node] = redis.call('EXISTS', prefix .. ':node:' .. node) == 1
      end
      if alive[node] then users[string.sub(m, sep + 1)] = true end
    end
  end
  return users
end
"""

COMMIT = (
    _PRUNE
    + _ROLLED_BACK
    + """
-- KEYS: epoch, dedupe, seq, log, seq of the room of the node's mark
-- ARGV: 1 epoch, 2 room, 3 text digest, 4 payload before the id, 5 payload after it,
--       6 now, 7 max count, 8 max age, 9 dedupe ttl (ms), 10 channel, 11 times,
--       12 event name (JSON string), 13 room (JSON string), 14 epoch (JSON string),
--       15 event name, 16 the mark (the last event id the node saw there; 0: none),
--       17 a new epoch (used when the data set was rolled back)
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {'EPOCH', cur or ''} end
if rolled_back(KEYS[5], ARGV[16]) then
  redis.call('SET', KEYS[1], ARGV[17])
  return {'EPOCH', ARGV[17]}
end
local seen = redis.call('GET', KEYS[2])
if seen then return {'DUP', seen} end
local id = redis.call('INCR', KEYS[3])
local payload = ARGV[4] .. id .. ARGV[5]
redis.call('XADD', KEYS[4], id .. '-0', 't', ARGV[6], 'p', payload, 'k', ARGV[15], 'e', ARGV[1])
prune(KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
redis.call('SET', KEYS[2], ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. id .. '\\n' .. ARGV[6]
  .. '\\n' .. ARGV[1], 'PX', ARGV[9])
local header = '["E",' .. ARGV[13] .. ',' .. id .. ',' .. ARGV[11] .. ',' .. ARGV[14] .. ']'
redis.call('PUBLISH', ARGV[10],
  header .. '\\n{"type":' .. ARGV[12] .. ',"payload":' .. payload .. '}')
return {'OK', tostring(id)}
"""
)

PAGE = (
    _PRUNE
    + """
-- KEYS: epoch, seq, log
-- ARGV: 1 epoch, 2 after, 3 limit, 4 now, 5 max count, 6 max age, 7 cursor epoch ('' none)
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {'EPOCH', cur or ''} end
prune(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]))
-- Entries of an older epoch (kept after a rollback) are skipped; at most the retention.
local function ours(entry) return entry[2][8] == nil or entry[2][8] == cur end
local function id_of(entry) return tonumber(string.match(entry[1], '^(%d+)')) end
-- Up to n entries of this epoch with ids above after.
local function read(after, n)
  local out, from = {}, (after + 1) .. '-0'
  while #out < n do
    local batch = redis.call('XRANGE', KEYS[3], from, '+', 'COUNT', math.max(n - #out, 16))
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      if ours(entry) and #out < n then out[#out + 1] = entry end
    end
    from = '(' .. batch[#batch][1]
  end
  return out
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local dropped = last
local first = read(0, 1)
if #first > 0 then dropped = id_of(first[1]) - 1 end
local after = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local truncated = (ARGV[7] ~= '' and ARGV[7] ~= cur) or after < dropped
local start = after
if truncated then start = 0 end
local entries = read(start, limit + 1)
local more = 0
if #entries > limit then more = 1 end
local out = {'OK', tostring(last), truncated and 1 or 0, more}
for i = 1, math.min(#entries, limit) do out[#out + 1] = entries[i][2][4] end
return out
"""
)

JOIN = (
    _LIVE
    + """
-- KEYS: epoch, presence, node's rooms, seq
-- ARGV: 1 epoch, 2 node, 3 user, 4 first ('1': record presence), 5 prefix, 6 channel,
--       7 the user:joined message, 8 room
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then return {'EPOCH', cur or ''} end
local users = live_users(KEYS[2], ARGV[5])
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[2], ARGV[2] .. '|' .. ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[8])
  if not users[ARGV[3]] then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
  users[ARGV[3]] = true
end
local out = {'OK', redis.call('GET', KEYS[4]) or '0'}
for user in pairs(users) do out[#out + 1] = user end
return out
"""
)

LEAVE = (
    _LIVE
    + """
-- KEYS: presence
-- ARGV: 1 node, 2 user, 3 prefix, 4 channel, 5 the user:left message ('': none)
redis.call('SREM', KEYS[1], ARGV[1] .. '|' .. ARGV[2])
local users = live_users(KEYS[1], ARGV[3])
if not users[ARGV[2]] and ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""
)

MEMBERS = (
    _LIVE
    + """
-- KEYS: presence; ARGV: 1 prefix
local out = {}
for user in pairs(live_users(KEYS[1], ARGV[1])) do out[#out + 1] = user end
return out
"""
)

SWEEP = (
    _LIVE
    + """
-- Forget the presence of dead nodes; tell the rooms about users who are gone.
-- KEYS: nodes; ARGV: 1 prefix, 2 channel, 3 now
local swept = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. ':node:' .. node) == 0 then
    local rooms_key = ARGV[1] .. ':noderooms:' .. node
    for _, room in ipairs(redis.call('SMEMBERS', rooms_key)) do
      local key = ARGV[1] .. ':pres:' .. room
      local gone = {}
      for _, m in ipairs(redis.call('SMEMBERS', key)) do
        if string.sub(m, 1, #node + 1) == node .. '|' then
          redis.call('SREM', key, m)
          gone[#gone + 1] = string.sub(m, #node + 2)
        end
      end
      local users = live_users(key, ARGV[1])
      for _, user in ipairs(gone) do
        if not users[user] and string.sub(room, 1, 5) ~= 'user:' then
          local header = cjson.encode({'P', room, user, ''})
          local payload = '{"roomId":' .. cjson.encode(room) .. ',"userId":' .. cjson.encode(user)
            .. ',"timestamp":' .. ARGV[3] .. '}'
          redis.call('PUBLISH', ARGV[2],
            header .. '\\n{"type":"user:left","payload":' .. payload .. '}')
        end
      end
    end
    redis.call('DEL', rooms_key)
    redis.call('SREM', KEYS[1], node)
    swept = swept + 1
  end
end
return swept
"""
)

RATE = """
-- A token bucket on Redis's clock (every node agrees on it).
-- KEYS: bucket; ARGV: 1 rate (tokens/s), 2 burst
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""

MARK = (
    _ROLLED_BACK
    + """
-- The heartbeat's check for a rolled-back data set (see rolled_back).
-- KEYS: epoch, seq of the room of the node's mark; ARGV: 1 epoch, 2 mark, 3 a new epoch
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] and rolled_back(KEYS[2], ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3])
  return ARGV[3]
end
return cur or ''
"""
)

REPLACE_EPOCH = """
-- Replace an epoch this node has left before (Redis came back with an old snapshot).
-- KEYS: epoch; ARGV: 1 the epoch to replace, 2 a new one
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1]) or ''
"""

RESET = """
-- A new epoch for the whole cluster, in one step: no commit can land between dropping
-- the counters and the new epoch (it would give an id of the old epoch out again).
-- KEYS: epoch; ARGV: 1 the key prefix with its ':', 2 the new epoch
for _, kind in ipairs({'seq', 'log', 'dd'}) do
  local cursor = '0'
  repeat
    local found = redis.call('SCAN', cursor, 'MATCH', ARGV[1] .. kind .. ':*', 'COUNT', 1000)
    cursor = found[1]
    for _, key in ipairs(found[2]) do redis.call('UNLINK', key) end
  until cursor == '0'
end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
"""

ENSURE_EPOCH = """
-- KEYS: epoch; ARGV: 1 a new epoch, used only when there is none (a fresh data set)
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
