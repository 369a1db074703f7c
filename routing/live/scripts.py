"""Lua scripts of the live queue state (run atomically inside Redis).

Key names are not spelled here: the caller passes them in. The apply and reconcile scripts
declare the keys they always touch in KEYS (known queues, status, writer lease), so a Redis
Cluster client sends them to the node that holds that centre's slot; the per-queue keys depend on
the queues in the batch and in the known-queues set, so the caller passes, for each of them, the
text before and after the queue name as built by ``routing.redis_keys`` (see
``store._templates``) and the scripts build them. Every key of one centre carries the same hash
tag, so the keys built inside lie in the declared keys' slot, on the node that runs the script:
Redis Cluster (7.0 tested) accepts such undeclared keys of the node's own slots.

Every write script first checks the AMI writer lease (``GET lease == writer``) and
returns -1 without writing when the caller does not hold it: a controller whose
lease expired while it was paused cannot overwrite the new writer's state.

Common head: KEYS known-queues key, status key, lease key; ARGV (11 values): waiting, left,
members and snapshot key (prefix, suffix) pairs, writer id, batch time, and the channel on which a
write that changed state publishes its batch time (readers of the live view wake up on it instead
of waiting for their next poll; a classic PUBLISH reaches subscribers on every node of a cluster).
"""

from __future__ import annotations

HEAD_KEYS = 3
HEAD_ARGS = 11

_PRELUDE = """
local W_PRE, W_SUF, L_PRE, L_SUF = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local M_PRE, M_SUF, S_PRE, S_SUF = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local QUEUES, STATUS, LEASE = KEYS[1], KEYS[2], KEYS[3]
local WRITER, NOW, CHANGED = ARGV[9], ARGV[10], ARGV[11]
local TOMBSTONE_S = 3600
if redis.call('GET', LEASE) ~= WRITER then return -1 end

local touched = {}
local function wkey(q) return W_PRE .. q .. W_SUF end
local function lkey(q) return L_PRE .. q .. L_SUF end
local function mkey(q) return M_PRE .. q .. M_SUF end
local function skey(q) return S_PRE .. q .. S_SUF end

-- Recompute the derived snapshot of one queue from its waiting set and members.
local function derive(q)
  local waiting = redis.call('ZCARD', wkey(q))
  local oldest = redis.call('ZRANGE', wkey(q), 0, 0, 'WITHSCORES')
  local logged, avail = 0, 0
  for _, v in ipairs(redis.call('HVALS', mkey(q))) do
    if string.find(v, '"removed":false', 1, true) then
      if string.find(v, '"logged_in":true', 1, true) then logged = logged + 1 end
      if string.find(v, '"available":true', 1, true) then avail = avail + 1 end
    end
  end
  redis.call('HSET', skey(q), 'waiting', waiting, 'oldest_join', oldest[2] or '',
             'logged_in', logged, 'available', avail, 'updated_at', NOW)
  redis.call('SADD', QUEUES, q)
  redis.call('ZREMRANGEBYSCORE', lkey(q), '-inf', tonumber(NOW) - TOMBSTONE_S)
end
"""

APPLY = (
    _PRELUDE
    + """
-- Ops after the head: J q uid ts | L q uid ts | M q iface json ts | H uid ts
local full_at = tonumber(redis.call('HGET', STATUS, 'full_reconcile_at') or '0')
local floor = {}
local function reconciled_at(q)
  local r = floor[q]
  if r == nil then
    r = math.max(full_at, tonumber(redis.call('HGET', skey(q), 'reconciled_at') or '0'))
    floor[q] = r
  end
  return r
end
local known = {}
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do known[q] = true end

local function join(q, uid, ts)
  if ts < reconciled_at(q) then return end
  touched[q] = true
  known[q] = true
  local left = redis.call('ZSCORE', lkey(q), uid)
  if left and tonumber(left) >= ts then return end
  redis.call('ZADD', wkey(q), 'NX', ts, uid)
end

local function leave(q, uid, ts)
  if ts < reconciled_at(q) then return end
  touched[q] = true
  known[q] = true
  local joined = redis.call('ZSCORE', wkey(q), uid)
  if joined and tonumber(joined) > ts then return end
  redis.call('ZADD', lkey(q), 'GT', ts, uid)
  if joined then redis.call('ZREM', wkey(q), uid) end
end

local function member(q, iface, json, ts)
  if ts < reconciled_at(q) then return end
  touched[q] = true
  known[q] = true
  local cur = redis.call('HGET', mkey(q), iface)
  if cur then
    local cur_ts = tonumber(string.match(cur, '^{"ts":([^,}]+)'))
    if cur_ts and cur_ts > ts then return end
  end
  redis.call('HSET', mkey(q), iface, json)
end

local function hangup(uid, ts)
  for q, _ in pairs(known) do
    local joined = redis.call('ZSCORE', wkey(q), uid)
    if joined and tonumber(joined) <= ts then
      redis.call('ZREM', wkey(q), uid)
      redis.call('ZADD', lkey(q), 'GT', ts, uid)
      touched[q] = true
    end
  end
end

local i, n = 12, #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'J' then join(ARGV[i+1], ARGV[i+2], tonumber(ARGV[i+3])); i = i + 4
  elseif op == 'L' then leave(ARGV[i+1], ARGV[i+2], tonumber(ARGV[i+3])); i = i + 4
  elseif op == 'M' then member(ARGV[i+1], ARGV[i+2], ARGV[i+3], tonumber(ARGV[i+4])); i = i + 5
  elseif op == 'H' then hangup(ARGV[i+1], tonumber(ARGV[i+2])); i = i + 3
  else return redis.error_reply('unknown op ' .. tostring(op)) end
end
local count = 0
for q, _ in pairs(touched) do derive(q); count = count + 1 end
redis.call('HSET', STATUS, 'last_event_at', NOW, 'alive_at', NOW, 'writer', WRITER)
if count > 0 then redis.call('PUBLISH', CHANGED, NOW) end
return count
"""
)

RECONCILE = (
    _PRELUDE
    + """
-- After the head: FULL ('1' = the picture covers every queue), then per queue:
-- name, member count, caller count, members (iface, json)..., callers (uid, join ts)...
local FULL = ARGV[12]
local seen = {}
local i, n = 13, #ARGV
while i <= n do
  local q, nm, nc = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  i = i + 3
  seen[q] = true
  redis.call('DEL', mkey(q))
  for _ = 1, nm do redis.call('HSET', mkey(q), ARGV[i], ARGV[i+1]); i = i + 2 end
  local old = {}
  local prev = redis.call('ZRANGE', wkey(q), 0, -1, 'WITHSCORES')
  for j = 1, #prev, 2 do old[prev[j]] = tonumber(prev[j+1]) end
  redis.call('DEL', wkey(q))
  for _ = 1, nc do
    local uid, t = ARGV[i], tonumber(ARGV[i+1])
    local o = old[uid]
    if o and math.abs(o - t) <= 2 then t = o end
    redis.call('ZADD', wkey(q), t, uid)
    redis.call('ZREM', lkey(q), uid)
    i = i + 2
  end
  redis.call('HSET', skey(q), 'reconciled_at', NOW)
  derive(q)
end
if FULL == '1' then
  for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
    if not seen[q] then
      redis.call('DEL', wkey(q), mkey(q), skey(q), lkey(q))
      redis.call('SREM', QUEUES, q)
    end
  end
  redis.call('HSET', STATUS, 'full_reconcile_at', NOW)
end
redis.call('HSET', STATUS, 'last_reconcile_at', NOW, 'alive_at', NOW, 'writer', WRITER)
redis.call('PUBLISH', CHANGED, NOW)
return 1
"""
)

MARK_ALIVE = """
-- KEYS[1] status, KEYS[2] lease; ARGV[1] writer, ARGV[2] time, ARGV[3] field or ''
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'alive_at', ARGV[2], 'writer', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[3], ARGV[2]) end
return 1
"""

FENCED_SET = """
-- KEYS[1] key, KEYS[2] lease; ARGV[1] writer, ARGV[2] value, ARGV[3] ttl ms
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

READ_ALL = """
-- KEYS[1] known queues, KEYS[2] status; ARGV[1], ARGV[2] snapshot key prefix, suffix
local out = {redis.call('HGET', KEYS[2], 'alive_at') or ''}
for _, q in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s = redis.call('HMGET', ARGV[1] .. q .. ARGV[2],
                       'waiting', 'oldest_join', 'logged_in', 'available')
  table.insert(out, q)
  for j = 1, 4 do table.insert(out, s[j] or '') end
end
return out
"""

RENEW_LEASE = """
-- KEYS[1] lease; ARGV[1] holder, ARGV[2] ttl ms. 1 = renewed, 0 = not ours (expired or taken)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_LEASE = """
-- KEYS[1] lease; ARGV[1] holder. 1 = released, 0 = not ours
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

HANDLE_TIMES = """
-- KEYS[1] lease, KEYS[2] one queue's handle times; ARGV[1] writer, ARGV[2] how many to keep,
-- then (time, "uniqueid|talk seconds") pairs. Fenced like every live write; ZADD NX: a replayed
-- AgentComplete is kept once.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 3, #ARGV, 2 do redis.call('ZADD', KEYS[2], 'NX', ARGV[i], ARGV[i + 1]) end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[2]) + 1))
return 1
"""

FIRST_JOINS = """
-- KEYS[1] lease, then per queue: its first joins, its waiting set, its snapshot (3 keys each);
-- ARGV[1] writer, ARGV[2] forget first joins older than this, then per queue (in KEYS order):
-- the number of joins n, then n (uniqueid, join time) pairs. A caller who rejoins a queue (the
-- wait loop's slices: docs/callbacks.md) keeps their first join time in the waiting set, so the
-- queue's longest wait counts from it; the snapshot's oldest_join is then recomputed. Returns
-- how many waiting callers had their first join restored.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local restored, a = 0, 3
for k = 2, #KEYS, 3 do
  local firsts, waiting, snapshot = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local n, here = tonumber(ARGV[a]), 0
  for i = a + 1, a + 2 * n, 2 do
    local uid = ARGV[i]
    -- LT CH: 1 for a first sight (or an earlier time replayed), 0 when seen before at or before
    if redis.call('ZADD', firsts, 'LT', 'CH', ARGV[i + 1], uid) == 0 then
      local first, now = redis.call('ZSCORE', firsts, uid), redis.call('ZSCORE', waiting, uid)
      if now and tonumber(now) > tonumber(first) then
        redis.call('ZADD', waiting, 'XX', first, uid)
        here = here + 1
      end
    end
  end
  a = a + 1 + 2 * n
  redis.call('ZREMRANGEBYSCORE', firsts, '-inf', ARGV[2])
  if here > 0 then
    local oldest = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
    redis.call('HSET', snapshot, 'oldest_join', oldest[2] or '')
    restored = restored + here
  end
end
return restored
"""
