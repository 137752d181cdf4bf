// ioredis: a small script corpus (defineCommand scripts, EVAL, EVALSHA,
// pipelines and transactions over hash tags, MSET/MGET) over keys in many
// slots. `cluster host:port...` runs it with ioredis's Cluster client,
// `plain host:port` with a plain connection; prints what it saw as JSON, so
// a fleet of proxies and a redis-server 7.0 can be compared.
import Redis from 'ioredis';

const [mode, ...addrs] = process.argv.slice(2);
const nodes = addrs.map((a) => { const i = a.lastIndexOf(':'); return { host: a.slice(0, i), port: Number(a.slice(i + 1)) }; });
let step = 'connect';
const deadline = setTimeout(() => { console.error('stuck at: ' + step); process.exit(3); }, 90000);
const redis = mode === 'cluster'
  ? new Redis.Cluster(nodes, { enableReadyCheck: true, redisOptions: { maxRetriesPerRequest: 3 } })
  : new Redis({ ...nodes[0], maxRetriesPerRequest: 3 });
await new Promise((resolve, reject) => { redis.once('ready', resolve); redis.once('error', reject); });
const out = {};

step = 'defineCommand';
redis.defineCommand('transfer', {
  numberOfKeys: 2,
  lua: "local a = tonumber(redis.call('get', KEYS[1]) or '0') local n = tonumber(ARGV[1]) " +
       "if a < n then return {a, tonumber(redis.call('get', KEYS[2]) or '0'), 0} end " +
       "return {redis.call('decrby', KEYS[1], n), redis.call('incrby', KEYS[2], n), 1}",
});
redis.defineCommand('limit', {
  numberOfKeys: 1,
  lua: "local c = redis.call('incr', KEYS[1]) if c == 1 then redis.call('expire', KEYS[1], ARGV[2]) end " +
       "if c > tonumber(ARGV[1]) then return 0 end return 1",
});
redis.defineCommand('hpair', {
  numberOfKeys: 1,
  lua: "redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) return redis.call('hgetall', KEYS[1])",
});
out.transfers = [];
for (let i = 0; i < 40; i++) {
  const a = `{acct${i}}:a`, b = `{acct${i}}:b`;
  await redis.set(a, String(100 + i));
  out.transfers.push(await redis.transfer(a, b, 30), await redis.transfer(a, b, 90 + i));
}
out.limits = [];
for (let i = 0; i < 12; i++) out.limits.push(await redis.limit(`rl:${i % 3}`, 3, 60));
out.hpairs = [];
for (let i = 0; i < 20; i++) out.hpairs.push(await redis.hpair(`hp:${i}`, 'f', `v${i}`));

step = 'eval';
const incrScript = "return {KEYS[1], redis.call('incrby', KEYS[1], ARGV[1])}";
out.evals = [];
for (let i = 0; i < 60; i++) out.evals.push(await redis.eval(incrScript, 1, `ev:${i}`, i));
out.evalError = await redis.eval("return redis.call('incr', KEYS[1])", 1, 'hp:0').catch((e) => 'error: ' + e.message.split(' ')[0]);

step = 'evalsha';
const sha = (await (mode === 'cluster'
  ? Promise.all(redis.nodes('master').map((n) => n.script('load', incrScript)))
  : Promise.all([redis.script('load', incrScript)])))[0];
out.sha = sha;
out.evalshas = [];
for (let i = 0; i < 30; i++) out.evalshas.push(await redis.evalsha(sha, 1, `ev:${i}`, 1000));

step = 'mset/mget';
out.mgets = [];
for (let g = 0; g < 20; g++) {
  const t = `{grp${g}}`;
  await redis.mset(`${t}:x`, `x${g}`, `${t}:y`, `y${g}`, `${t}:z`, String(g));
  out.mgets.push(await redis.mget(`${t}:x`, `${t}:y`, `${t}:z`, `${t}:none`));
}

step = 'pipelines';
// Pipelines of one hash tag each (ioredis sends a pipeline to one node),
// all at once: many slots in flight together.
const pipes = [];
for (let g = 0; g < 25; g++) {
  const t = `{pipe${g}}`;
  pipes.push(redis.pipeline()
    .set(`${t}:a`, String(g))
    .incrby(`${t}:a`, 10)
    .mset(`${t}:b`, 'bee', `${t}:c`, 'sea')
    .transfer(`${t}:a`, `${t}:d`, 5)
    .eval(incrScript, 1, `${t}:e`, g)
    .evalsha(sha, 1, `${t}:e`, 1)
    .limit(`${t}:rl`, 1, 60)
    .limit(`${t}:rl`, 1, 60)
    .mget(`${t}:a`, `${t}:b`, `${t}:c`, `${t}:d`, `${t}:e`)
    .exec());
}
out.pipelines = (await Promise.all(pipes)).map((rs) => rs.map(([err, v]) => (err ? 'error' : v)));

step = 'multi';
out.multis = [];
for (let g = 0; g < 5; g++) {
  const t = `{tx${g}}`;
  out.multis.push(await redis.multi().set(`${t}:a`, String(g)).incr(`${t}:a`).transfer(`${t}:a`, `${t}:b`, 1)
    .mget(`${t}:a`, `${t}:b`).exec());
}

step = 'read back';
out.readBack = [];
for (let i = 0; i < 40; i++) out.readBack.push(await redis.mget(`{acct${i}}:a`, `{acct${i}}:b`));
for (let i = 0; i < 60; i++) out.readBack.push(await redis.get(`ev:${i}`));

step = 'quit';
await redis.quit();
clearTimeout(deadline);
console.log(JSON.stringify(out));
