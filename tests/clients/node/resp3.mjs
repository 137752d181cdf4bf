// node-redis 5 over RESP3: the script and pub/sub examples, and client-side
// caching. Prints what it saw as JSON, so runs against Redis 7.0 and
// against evalproxy can be compared.
import { createClient } from 'redis';

const url = process.argv[2];
const out = {};
let step = 'connect';
// A step that hangs says which it is, rather than the whole run timing out.
const watchdog = setInterval(() => {}, 1000);
const deadline = setTimeout(() => { console.error('stuck at: ' + step); process.exit(3); }, 60000);
const client = createClient({ url, RESP: 3 });
await client.connect();
await client.flushAll();

step = 'scripts';
// Scripts from the seeds: a lock, a rate limiter, a counter.
const unlock = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
out.lockTaken = await client.set('lock', 'tok', { NX: true, PX: 10000 });
out.lockAgain = await client.set('lock', 'other', { NX: true, PX: 10000 });
out.unlockWrong = await client.eval(unlock, { keys: ['lock'], arguments: ['other'] });
out.unlock = await client.eval(unlock, { keys: ['lock'], arguments: ['tok'] });
const limiter = "local c = redis.call('incr', KEYS[1]) if c == 1 then redis.call('expire', KEYS[1], ARGV[2]) end " +
  "if c > tonumber(ARGV[1]) then return 0 end return 1";
out.limiter = [];
for (let i = 0; i < 4; i++) out.limiter.push(await client.eval(limiter, { keys: ['rl'], arguments: ['3', '60'] }));
const sha = await client.scriptLoad("return redis.call('incrby', KEYS[1], ARGV[1])");
out.counter = [await client.evalSha(sha, { keys: ['n'], arguments: ['5'] }),
               await client.evalSha(sha, { keys: ['n'], arguments: ['-2'] })];

step = 'shapes';
// RESP3 shapes, plain and from scripts.
await client.hSet('h', { a: '1', b: '2' });
out.hgetall = await client.hGetAll('h');
await client.zAdd('z', [{ score: 1.5, value: 'a' }, { score: 2, value: 'b' }]);
out.zscore = await client.zScore('z', 'a');
out.zrangeWithScores = await client.zRangeWithScores('z', 0, -1);
await client.sAdd('s', ['x']);
out.smembers = await client.sMembers('s');
out.scriptMap = await client.eval("redis.setresp(3) return redis.call('hgetall', KEYS[1])", { keys: ['h'] });
out.scriptDouble = await client.eval("return {double=3.5}", { keys: [] });
out.scriptNull = await client.eval("redis.setresp(3) return redis.call('get', 'missing')", { keys: [] });
out.scriptBool = await client.eval("redis.setresp(3) return true", { keys: [] });
out.multi = await client.multi().set('m', '1').incr('m').hGetAll('h').exec();

step = 'pubsub';
// Pub/sub on a RESP3 connection.
const sub = client.duplicate();
await sub.connect();
let delivered;
const message = new Promise((resolve) => { delivered = resolve; });
// SUBSCRIBE answers once the subscription holds: the message published after it arrives.
await sub.subscribe('node-ch', (msg, channel) => delivered([channel, msg]));
out.receivers = await client.publish('node-ch', 'hello');
out.message = await message;
out.pingWhileSubscribed = await sub.ping();
await sub.unsubscribe('node-ch');
await sub.quit();

step = 'client-side caching';
// Client-side caching: a cached key is invalidated when another client writes it.
const cached = createClient({ url, RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } });
await cached.connect();
await client.set('c', 'one');
out.cacheFirst = await cached.get('c');
out.cacheSecond = await cached.get('c');
await client.eval("return redis.call('set', KEYS[1], 'two')", { keys: ['c'] });
let seen = null;
for (let i = 0; i < 200; i++) {
  seen = await cached.get('c');
  if (seen === 'two') break;
  await new Promise((r) => setTimeout(r, 10));
}
out.cacheAfterWrite = seen;
await cached.quit();
await client.quit();
clearInterval(watchdog);
clearTimeout(deadline);
console.log(JSON.stringify(out));
