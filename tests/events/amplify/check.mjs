// The official AppSync Events client (aws-amplify 6, `events` from aws-amplify/data) against the embedded
// gateway, run by tests/events/test_events_amplify.py. Prints one JSON line per check
// ({"check", "ok", "detail"}); asks the test for things with {"need": ...} and reads the answer as one line
// on stdin ("short_token": a token of SESSION_A that expires in about 2 s; "disconnect": the server drops
// every socket); ends with {"done": true}. Exit status 0 even when a check fails: the test reads the checks
// and says which ones failed.
//
// Environment: ENDPOINT (https://127.0.0.1:<port>/event; Amplify insists on wss:// for the socket, so the
// test serves TLS and passes its CA in NODE_EXTRA_CA_CERTS), API_KEY, GUEST_TOKEN (session SESSION_A),
// OTHER_SESSION, BAD_TOKEN.
import { Amplify } from 'aws-amplify';
import { events } from 'aws-amplify/data';
import { Hub } from 'aws-amplify/utils';
import * as readline from 'node:readline';

const env = process.env;
const A = `/conversations/${env.SESSION_A}`;
const guest = { authMode: 'lambda', authToken: env.GUEST_TOKEN };
const server = { authMode: 'apiKey', apiKey: env.API_KEY };
const lines = readline.createInterface({ input: process.stdin });
const stdin = lines[Symbol.asyncIterator]();

const emit = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const ask = async (need) => {
  emit({ need });
  return (await stdin.next()).value;
};
const check = (name, ok, detail) => emit({ check: name, ok: Boolean(ok), detail: detail ?? null });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const describe = (error) => (error && typeof error === 'object'
  ? `${error.name ?? ''}: ${error.message ?? ''} ${JSON.stringify(error.errors ?? '')}` : String(error));
async function within(ms, predicate) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return true;
    await sleep(50);
  }
  return predicate();
}

Amplify.configure({ API: { Events: { endpoint: env.ENDPOINT, region: 'us-east-1', defaultAuthMode: 'lambda' } } });

const states = [];
Hub.listen('api', ({ payload }) => {
  if (payload.event === 'ConnectionStateChange') states.push(payload.data.connectionState);
});

// A page that connects long after it loaded: Amplify's keep-alive clock starts when its provider is created
// (at import), so move the clock 70 s on (its alert threshold is 65 s without a `ka`).
const realNow = Date.now;
Date.now = () => realNow() + 70_000;

// 1. Refused at connect: a forged token gets connection_error UnauthorizedException, not retried.
try {
  await events.connect(A, { authMode: 'lambda', authToken: env.BAD_TOKEN });
  check('connect_refused', false, 'connected with a forged token');
} catch (error) {
  check('connect_refused', describe(error).includes('UnauthorizedException'), describe(error));
}

// 2. Connect and subscribe with the guest's token.
const received = [];
const subErrors = [];
const channel = await events.connect(A, guest);
const connectedAt = Date.now();
const firstState = states.length;
const sub = channel.subscribe({ next: (data) => received.push(data), error: (e) => subErrors.push(e) });
try {
  await sub.ready;
  check('subscribe', true);
} catch (error) {
  check('subscribe', false, describe(error));
}

// 3. A subscription made with a token that expires: Amplify must surface it (subscribe_error), not go silent.
const expiredErrors = [];
const shortToken = await ask('short_token');
const shortChannel = await events.connect(A, { authMode: 'lambda', authToken: shortToken });
const shortSub = shortChannel.subscribe({ next: () => undefined, error: (e) => expiredErrors.push(e) });
let shortReady = true;
try {
  await shortSub.ready;
} catch (error) {
  shortReady = describe(error);
}
const expired = await within(6000, () => expiredErrors.length > 0);
check('expiry_surfaces_error', shortReady === true && expired
  && describe(expiredErrors[0]).includes('UnauthorizedException'),
  expired ? describe(expiredErrors[0]) : `ready=${shortReady}, no error within 6 s`);

// 4. Keep-alive: after Amplify's first heartbeat (5 s after the ack) the state is Connected, not
// ConnectedPendingKeepAlive. No data has arrived yet, so only the gateway's first `ka` can make it so.
await sleep(Math.max(0, connectedAt + 6000 - Date.now()));
const sinceConnect = states.slice(firstState);
check('keepalive_connected', states.at(-1) === 'Connected' && !sinceConnect.includes('ConnectedPendingKeepAlive'),
  sinceConnect.join(' > '));

// 5. Refused subscribe: another guest's conversation. (After the keep-alive check: Amplify leaves its
// state at Connecting after a refused subscribe.)
const otherChannel = await events.connect(`/conversations/${env.OTHER_SESSION}`, guest);
const otherErrors = [];
const otherSub = otherChannel.subscribe({ next: () => undefined, error: (e) => otherErrors.push(e) });
try {
  await otherSub.ready;
  check('subscribe_refused', false, 'subscribed to another session');
} catch (error) {
  check('subscribe_refused', describe(error).includes('UnauthorizedException'), describe(error));
}

// 6. Publish with the API key over HTTP, delivered to the subscription.
try {
  const failed = await events.post(A, { n: 1 }, server);
  check('post_with_api_key', failed === undefined, JSON.stringify(failed ?? null));
} catch (error) {
  check('post_with_api_key', false, describe(error));
}
const delivered = await within(3000, () => received.some((d) => d?.event?.n === 1));
check('delivery', delivered && received[0].event.n === 1, JSON.stringify(received));

// 7. Publish with the API key over the socket.
try {
  await channel.publish({ n: 2 }, server);
  const got = await within(3000, () => received.some((d) => d?.event?.n === 2));
  check('socket_publish_with_api_key', got, JSON.stringify(received));
} catch (error) {
  check('socket_publish_with_api_key', false, describe(error));
}

// 8. Browsers cannot publish: over the socket (publish_error) and over HTTP, where the error's name must
// come from x-amzn-ErrorType (without it Amplify says UnknownError).
try {
  await channel.publish({ forged: true });
  check('socket_publish_refused', false, 'published with a guest token');
} catch (error) {
  check('socket_publish_refused', describe(error).includes('UnauthorizedException'), describe(error));
}
try {
  await events.post(A, { forged: true }, guest);
  check('post_refused_error_type', false, 'posted with a guest token');
} catch (error) {
  check('post_refused_error_type', error?.name === 'UnauthorizedException', describe(error));
}

// 9. Reconnect: the server drops the socket (a worker restarting, close 1001); Amplify reconnects, subscribes
// again and the same subscription keeps receiving.
const before = states.length;
await ask('disconnect');
const disrupted = await within(3000, () => states.slice(before).includes('ConnectionDisrupted'));
const back = await within(12000, () => states.slice(before).includes('ConnectionDisrupted')
  && states.at(-1) === 'Connected');
await sleep(300); // the subscribe_success of the re-subscription
let reconnected = false;
if (back) {
  await events.post(A, { n: 3 }, server).catch(() => undefined);
  reconnected = await within(3000, () => received.some((d) => d?.event?.n === 3));
}
check('reconnect', disrupted && back && reconnected && subErrors.length === 0,
  `${states.slice(before).join(' > ')}; received ${received.length}; errors ${subErrors.map(describe)}`);

sub.unsubscribe();
await events.closeAll();
emit({ done: true });
lines.close();
process.exit(0);
