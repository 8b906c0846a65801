// A real OpenID provider (panva/oidc-provider) for tollgate's demo and end-to-end tests.
//
//   node provider.mjs --port 9000 [--keys keys.json] [--access-token-ttl 600]
//
// Serves the issuer http://127.0.0.1:<port> on 127.0.0.1 only. `--keys` is a private JWKS
// ({"keys": [...]}, as written by keys.mjs); the FIRST key signs the access tokens, the others
// are only published (rotation = restart with the new key first and the old one after it).
// Without --keys it uses demo-keys.json beside this file.
//
// Test instrumentation (not a mock, the provider is the real thing): every request is counted
// by path; GET /_counts answers {path: count}, POST /_counts/reset zeroes the counts.
// POST /_faults with {"<target>": {"delay_ms": N, "status": S, "body": B}} makes an endpoint
// slow, failing or lying; targets are `introspection`, `jwks` and `discovery`; B is one of
// "html", "empty", "oversized", "garbage", "unusable_keys" (jwks only) or "wrong_issuer"
// (discovery only), see FAULT_BODIES below. A delay is a timer, other requests are served
// meanwhile. POST /_faults with {} clears every fault; GET /_faults shows them. The process
// prints one line `ready <issuer>` on stdout once it listens, and exits 0 on SIGTERM or SIGINT.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const HERE = dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9000' },
    keys: { type: 'string', default: join(HERE, 'demo-keys.json') },
    'access-token-ttl': { type: 'string', default: '600' },
  },
  strict: true,
});

const PORT = Number.parseInt(args.port, 10);
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error(`provider: bad --port ${args.port}`);
  process.exit(2);
}
const TTL = Number.parseInt(args['access-token-ttl'], 10);
if (!Number.isInteger(TTL) || TTL < 1) {
  console.error(`provider: bad --access-token-ttl ${args['access-token-ttl']}`);
  process.exit(2);
}
const ISSUER = `http://127.0.0.1:${PORT}`;

// --- keys -------------------------------------------------------------------------------------
function loadKeys(path) {
  const jwks = JSON.parse(readFileSync(path, 'utf8'));
  if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new Error(`${path}: expected a private JWKS {"keys": [...]} with at least one key`);
  }
  return jwks;
}

// The JWS algorithm a key signs with: its own `alg`, else the usual one for its type.
function signingAlg(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv];
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  throw new Error(`cannot tell the signing algorithm of key ${jwk.kid ?? '(no kid)'}`);
}

let jwks;
try {
  jwks = loadKeys(args.keys);
} catch (err) {
  console.error(`provider: ${err.message}`);
  process.exit(2);
}
const SIGNING_KEY = jwks.keys[0];
const SIGNING_ALG = signingAlg(SIGNING_KEY);

// --- resource servers and clients ------------------------------------------------------------
const ORDERS = 'api://orders';
const OPAQUE = 'api://opaque';
const ORDERS_SCOPES = ['orders:read', 'orders:write', 'orders:admin'];

// Per-client facts. `scope` is the client's allow-list: asking for a scope outside it is
// `invalid_scope` (oidc-provider checks this only for scopes listed in the `scopes` option,
// which is why the orders scopes are listed there).
const CLIENTS = {
  'orders-app': {
    secret: 'orders-app-secret',
    scope: ORDERS_SCOPES.join(' '),
    roles: ['admin', 'buyer'],
  },
  reporting: {
    secret: 'reporting-secret',
    scope: 'orders:read',
    roles: ['viewer'],
  },
  introspector: {
    secret: 'introspector-secret',
    scope: '',
    roles: [],
  },
};

const RESOURCE_SERVERS = {
  [ORDERS]: { format: 'jwt', scopes: ORDERS_SCOPES },
  [OPAQUE]: { format: 'opaque', scopes: ORDERS_SCOPES },
};

const configuration = {
  jwks,
  clients: Object.entries(CLIENTS).map(([clientId, c]) => ({
    client_id: clientId,
    client_secret: c.secret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    ...(c.scope ? { scope: c.scope } : {}),
  })),
  clientDefaults: {
    // Defaults to RS256, which a non-RSA key set could not honour.
    id_token_signed_response_alg: SIGNING_ALG,
  },
  scopes: ['openid', 'offline_access', ...ORDERS_SCOPES],
  // Fixed cookie keys: nothing here uses cookies, this only silences the start-up warning.
  cookies: { keys: ['tollgate-demo-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The `introspector` client may introspect any token; other clients only their own.
      allowedPolicy: async (ctx, client, token) => client.clientId === 'introspector'
        || token.clientId === client.clientId,
    },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A client_credentials request without `resource` is for api://orders.
      defaultResource: async () => ORDERS,
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        const rs = RESOURCE_SERVERS[resourceIndicator];
        if (!rs) {
          throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        // The scopes this client may have (a second guard: asking for another listed scope
        // is already refused as invalid_scope by the client's `scope` allow-list).
        const allowed = new Set((client?.scope ?? '').split(' ').filter(Boolean));
        const info = {
          audience: resourceIndicator,
          scope: rs.scopes.filter((s) => allowed.has(s)).join(' '),
          accessTokenTTL: TTL,
          accessTokenFormat: rs.format,
        };
        if (rs.format === 'jwt') {
          info.jwt = { sign: { alg: SIGNING_ALG, kid: SIGNING_KEY.kid } };
        }
        return info;
      },
    },
  },
  // Custom claims, in JWT access tokens and in introspection answers alike.
  extraTokenClaims: async (ctx, token) => {
    const c = CLIENTS[token.clientId];
    if (!c) return undefined;
    return {
      roles: c.roles,
      tenant: { id: 'acme', plan: 'gold' },
      'https://tollgate.dev/department': 'sales',
    };
  },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? TTL,
  },
  // Errors as plain JSON, no HTML pages.
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(ISSUER, configuration);
// oidc-provider answers a bug in this file with a bare `server_error`: say what it was.
provider.on('server_error', (ctx, err) => {
  console.error(`provider: server_error on ${ctx.method} ${ctx.path}:`, err);
});

// --- test instrumentation: request counts by path --------------------------------------------
let counts = {};
provider.use(async (ctx, next) => {
  if (ctx.path === '/_counts' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = counts;
    return undefined;
  }
  if (ctx.path === '/_counts/reset' && ctx.method === 'POST') {
    counts = {};
    ctx.status = 204;
    return undefined;
  }
  if (ctx.path !== '/_faults') counts[ctx.path] = (counts[ctx.path] ?? 0) + 1;
  return next();
});

// --- test instrumentation: faults of the introspection, JWKS and discovery endpoints --------
// Registered after the counter, so a faulty call is still counted.
const INTROSPECTION_PATH = '/token/introspection';
const FAULT_PATHS = {
  introspection: INTROSPECTION_PATH,
  jwks: '/jwks',
  discovery: '/.well-known/openid-configuration',
};
// Past the caps a gateway should have (tollgate: a JWKS at most 256 KiB, a discovery document
// or an introspection answer at most 64 KiB), but no bigger than needed: a discovery document or
// introspection answer of 96 KiB is over its own cap and under the JWKS one.
const OVERSIZED_BYTES = { jwks: 300 * 1024, discovery: 96 * 1024, introspection: 96 * 1024 };

// A JWKS in which no key may verify a token, each for its own reason. The real signing key
// appears too, but only as an encryption key and with a `key_ops` that lacks "verify", so a
// filter that ignores `use` / `key_ops` would find it. Made once, when a fault first asks for
// them, before POST /_faults answers (RSA key generation can take longer than a gateway's
// fetch timeout, so it must not happen while a gateway waits).
const generated = (type, options) => new Promise((resolve, reject) => {
  generateKeyPair(type, options, (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey })));
});
let unusableKeysMade;
function unusableKeysOnce() {
  unusableKeysMade ??= Promise.all([
    generated('rsa', { modulusLength: 1024 }),
    generated('ec', { namedCurve: 'P-256' }),
    generated('rsa', { modulusLength: 2048 }),
  ]).then(([weakPair, ecPair, fullPair]) => unusableKeys(
    weakPair.publicKey.export({ format: 'jwk' }),
    ecPair.publicKey.export({ format: 'jwk' }),
    fullPair.privateKey.export({ format: 'jwk' }),
  ));
  return unusableKeysMade;
}

function unusableKeys(weak, ec, withPrivate) {
  const pub = { ...SIGNING_KEY };
  for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv']) delete pub[m];
  const offCurve = { ...ec, y: Buffer.from(ec.y, 'base64url').map((b, i) => (i === 31 ? b ^ 1 : b)).toString('base64url') };
  return {
    keys: [
      { ...pub, use: 'enc' },
      { ...pub, kid: `${pub.kid ?? 'signing'}-ops`, use: undefined, key_ops: ['encrypt'] },
      { ...weak, kid: 'rsa-1024', alg: 'RS256', use: 'sig' },
      { kty: 'oct', kid: 'oct-1', alg: 'HS256', use: 'sig', k: randomBytes(32).toString('base64url') },
      { ...offCurve, kid: 'ec-off-curve', alg: 'ES256', use: 'sig' },
      { ...withPrivate, kid: 'rsa-private', alg: 'RS256', use: 'sig' },
      { kty: 'RSA', kid: 'rsa-not-base64url', alg: 'RS256', use: 'sig', n: 'not base64url!', e: 'AQAB' },
      { kty: 'RSA', kid: 'rsa-e-1', alg: 'RS256', use: 'sig', n: pub.n ?? weak.n, e: 'AQ' },
    ].map((k) => JSON.parse(JSON.stringify(k))),
  };
}

// What a faulty endpoint answers instead of its real body. `real` is the real answer's body
// (an object), for the bodies built from it; `target` the faulty endpoint.
const FAULT_BODIES = {
  // A proxy's or a captive portal's error page, sent as text/html.
  html: () => ({ type: 'text/html', body: '<!doctype html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>\n' }),
  // Nothing at all, though JSON was announced.
  empty: () => ({ type: 'application/json', body: '' }),
  // The real answer, padded with one more member past OVERSIZED_BYTES: valid JSON, only too big.
  oversized: (real, target) => ({ type: 'application/json', body: JSON.stringify({ ...real, padding: 'x'.repeat(OVERSIZED_BYTES[target]) }) }),
  // Truncated JSON followed by bytes that are not UTF-8.
  garbage: () => ({ type: 'application/json', body: Buffer.concat([Buffer.from('{"keys": [{"kty": "RSA", "n": '), Buffer.from([0xff, 0xfe, 0x00, 0x81]), randomBytes(64)]) }),
  unusable_keys: (real, target, unusable) => ({ type: 'application/json', body: JSON.stringify(unusable) }),
  // The real discovery document, naming another issuer.
  wrong_issuer: (real) => ({ type: 'application/json', body: JSON.stringify({ ...real, issuer: 'https://attacker.example' }) }),
};
const BODIES_FOR = {
  introspection: ['html', 'empty', 'oversized', 'garbage'],
  jwks: ['html', 'empty', 'oversized', 'garbage', 'unusable_keys'],
  discovery: ['html', 'empty', 'oversized', 'garbage', 'wrong_issuer'],
};

let faults = {};

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  return text ? JSON.parse(text) : {};
}

// {} clears; {"<target>": {"delay_ms": N, "status": S, "body": B}} sets (any of the three).
function parseFaults(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new Error('expected a JSON object');
  }
  const out = {};
  for (const [name, value] of Object.entries(body)) {
    if (!(name in FAULT_PATHS)) {
      throw new Error(`unknown fault target ${name} (one of ${Object.keys(FAULT_PATHS).join(', ')})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`${name}: expected an object`);
    }
    const fault = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'delay_ms' && Number.isInteger(v) && v >= 0 && v <= 600000) fault.delay_ms = v;
      else if (k === 'status' && Number.isInteger(v) && v >= 100 && v <= 599) fault.status = v;
      else if (k === 'body' && BODIES_FOR[name].includes(v)) fault.body = v;
      else {
        throw new Error(`${name}.${k}: expected delay_ms (0..600000), status (100..599) or body (${BODIES_FOR[name].join(', ')})`);
      }
    }
    out[name] = fault;
  }
  return out;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/_faults') {
    if (ctx.method === 'GET') {
      ctx.type = 'json';
      ctx.body = faults;
      return undefined;
    }
    if (ctx.method === 'POST') {
      try {
        faults = parseFaults(await readJson(ctx.req));
        if (Object.values(faults).some((f) => f.body === 'unusable_keys')) await unusableKeysOnce();
      } catch (err) {
        ctx.status = 400;
        ctx.type = 'json';
        ctx.body = { error: 'invalid_request', error_description: err.message };
        return undefined;
      }
      console.error(`provider: faults ${JSON.stringify(faults)}`);
      ctx.status = 204;
      return undefined;
    }
  }
  const target = Object.keys(FAULT_PATHS).find((t) => FAULT_PATHS[t] === ctx.path);
  const fault = target ? faults[target] : undefined;
  if (!fault) return next();
  // A timer, not a busy wait: the event loop keeps serving other requests meanwhile.
  if (fault.delay_ms) await new Promise((resolve) => { setTimeout(resolve, fault.delay_ms); });
  if (fault.body) {
    let real = {};
    if (fault.body === 'oversized' || fault.body === 'wrong_issuer') {
      await next();
      real = typeof ctx.body === 'object' && ctx.body !== null && !Buffer.isBuffer(ctx.body) ? ctx.body : {};
    }
    const unusable = fault.body === 'unusable_keys' ? await unusableKeysOnce() : undefined;
    const { type, body } = FAULT_BODIES[fault.body](real, target, unusable);
    ctx.status = fault.status ?? 200;
    ctx.remove('cache-control');
    ctx.type = type;
    ctx.body = body;
    if (body === '') ctx.length = 0;
    return undefined;
  }
  if (fault.status) {
    ctx.status = fault.status;
    ctx.type = 'json';
    ctx.body = { error: 'server_error', error_description: `injected fault: ${fault.status}` };
    return undefined;
  }
  return next();
});

const server = provider.listen(PORT, '127.0.0.1', () => {
  console.log(`ready ${ISSUER}`);
});
server.on('error', (err) => {
  console.error(`provider: ${err.message}`);
  process.exit(1);
});

function shutdown(signal) {
  console.error(`provider: ${signal}, stopping`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Never hang on shutdown.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
