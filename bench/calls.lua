-- The calls rows of make bench: 10 000 sequential redis.call's in one script,
-- a GET/SET/HSET/DEL mix on two keys. KEYS[1] a string, KEYS[2] a hash.
local s, h = KEYS[1], KEYS[2]
for i = 1, 2500 do
  redis.call('SET', s, i)
  redis.call('GET', s)
  redis.call('HSET', h, 'f', i)
  redis.call('DEL', h)
end
return 10000
