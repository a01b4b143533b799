// A development OpenID provider built on panva's oidc-provider, for the sign-in tests and the demo.
// Development only: its login page takes any password for a known user.
//
//   node idp.mjs config.json      (or the JSON itself in the IDP_CONFIG environment variable)
//
// config: {"port": 0, "issuer": "http://127.0.0.1:PORT", "clients": [<client metadata>],
//          "users": {"ada": {"name": "Ada", "org": "hmt", "groups": ["finance"]}},
//          "hosts": {"assets.localhost": "127.0.0.1"}}   // names the IdP's own HTTP calls resolve
// Prints one line `listening <port>` on stdout when ready.
// Test hook (loopback only): POST /__test/rotate replaces the signing key (a new kid; the old key
// is no longer published). Sessions and grants survive it (the memory adapter is shared).

import { readFileSync } from 'node:fs';
import http from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';

const raw = process.argv[2] ? readFileSync(process.argv[2], 'utf8') : process.env.IDP_CONFIG;
const config = JSON.parse(raw);
const users = config.users ?? {};
const hosts = config.hosts ?? {};
const cookieKeys = [randomBytes(32).toString('hex')];

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

// The provider's own calls (back-channel logout) go to the gateway's configured host names, which
// only browsers resolve to loopback; oidc-provider's default fetch also refuses loopback addresses.
function loopbackFetch(url, options) {
  const target = new URL(url);
  const address = hosts[target.hostname] ?? target.hostname;
  return new Promise((resolve, reject) => {
    const headers = Object.fromEntries(options.headers?.entries?.() ?? []);
    headers.host = target.host;
    const body = options.body === undefined ? undefined : String(options.body);
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const request = http.request({
      host: address, port: target.port || 80, path: target.pathname + target.search,
      method: options.method ?? 'GET', headers, signal: options.signal,
    }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve(new Response(Buffer.concat(chunks), { status: response.statusCode })));
    });
    request.on('error', reject);
    if (body !== undefined) request.write(body);
    request.end();
  });
}

function makeProvider(signingKey) {
  const provider = new Provider(config.issuer, {
    clients: config.clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: cookieKeys },
    claims: { openid: ['sub'], profile: ['name', 'org', 'groups'] },
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    pkce: { required: () => true },
    fetch: loopbackFetch,
    async findAccount(ctx, sub) {
      const user = users[sub];
      if (!user) return undefined;
      return { accountId: sub, async claims() { return { sub, ...user }; } };
    },
    // The gateway is a first-party client: no consent screen (oidc-provider's documented recipe).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile');
      await grant.save();
      return grant;
    },
    renderError(ctx, out) {
      ctx.type = 'text';
      ctx.body = `error: ${out.error}\n${out.error_description ?? ''}\n`;
    },
  });
  provider.on('backchannel.error', (ctx, err) => console.error(`backchannel logout failed: ${err.message}`));
  provider.on('backchannel.success', (ctx, client, accountId, sid) => console.error(`backchannel logout sent for ${accountId}`));
  return provider;
}

let current = makeProvider(newSigningKey());

function loopback(req) {
  const address = req.socket.remoteAddress ?? '';
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__test/')) {
    if (!loopback(req)) { res.writeHead(404).end(); return; }
    if (req.method === 'POST' && req.url === '/__test/rotate') {
      const key = newSigningKey();
      current = makeProvider(key);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ kid: key.kid }));
      return;
    }
    res.writeHead(404).end();
    return;
  }
  current.callback()(req, res);
});

server.listen(config.port, config.host ?? '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
