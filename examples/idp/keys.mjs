// Writes a private JWKS with one freshly generated signing key to stdout.
//
//   node keys.mjs --alg RS256 --kid k1 > keys.json      (RS256 | PS256 | ES256 | EdDSA)
//   node keys.mjs --alg ES256 --kid k2 --public         (the public JWKS instead)
//
// RSA keys are 2048 bits. The JWK carries kid, alg and use: "sig".
import { parseArgs } from 'node:util';

import { exportJWK, generateKeyPair } from 'jose';

const ALGS = new Set(['RS256', 'PS256', 'ES256', 'EdDSA']);

const { values: args } = parseArgs({
  options: {
    alg: { type: 'string', default: 'RS256' },
    kid: { type: 'string' },
    public: { type: 'boolean', default: false },
  },
  strict: true,
});

if (!ALGS.has(args.alg)) {
  console.error(`keys: --alg must be one of ${[...ALGS].join(', ')}`);
  process.exit(2);
}

const { privateKey, publicKey } = await generateKeyPair(args.alg, {
  extractable: true,
  modulusLength: 2048,
  crv: args.alg === 'EdDSA' ? 'Ed25519' : undefined,
});
const jwk = await exportJWK(args.public ? publicKey : privateKey);
const out = {
  kid: args.kid ?? `${args.alg.toLowerCase()}-${Date.now()}`,
  alg: args.alg,
  use: 'sig',
  ...jwk,
};
process.stdout.write(`${JSON.stringify({ keys: [out] }, null, 2)}\n`);
