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
// POST /_faults with {"introspection": {"delay_ms": 3000}} and/or {"introspection": {"status":
// 500}} makes the introspection endpoint slow or failing (a delay is a timer, other requests are
// served meanwhile); POST /_faults with {} clears every fault; GET /_faults shows them. The
// process prints one line `ready <issuer>` on stdout once it listens, and exits 0 on SIGTERM or
// SIGINT.
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

// --- test instrumentation: faults of the introspection endpoint -------------------------------
// Registered after the counter, so a faulty introspection call is still counted.
const INTROSPECTION_PATH = '/token/introspection';
let faults = {};

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8').trim();
  return text ? JSON.parse(text) : {};
}

// {} clears; {"introspection": {"delay_ms": N, "status": S}} sets (either or both).
function parseFaults(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new Error('expected a JSON object');
  }
  const out = {};
  for (const [name, value] of Object.entries(body)) {
    if (name !== 'introspection') throw new Error(`unknown fault target ${name}`);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error('introspection: expected an object');
    }
    const fault = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'delay_ms' && Number.isInteger(v) && v >= 0 && v <= 600000) fault.delay_ms = v;
      else if (k === 'status' && Number.isInteger(v) && v >= 100 && v <= 599) fault.status = v;
      else throw new Error(`introspection.${k}: expected delay_ms (0..600000) or status (100..599)`);
    }
    out.introspection = fault;
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
  const fault = ctx.path === INTROSPECTION_PATH ? faults.introspection : undefined;
  if (fault) {
    // A timer, not a busy wait: the event loop keeps serving other requests meanwhile.
    if (fault.delay_ms) await new Promise((resolve) => { setTimeout(resolve, fault.delay_ms); });
    if (fault.status) {
      ctx.status = fault.status;
      ctx.type = 'json';
      ctx.body = { error: 'server_error', error_description: `injected fault: ${fault.status}` };
      return undefined;
    }
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
