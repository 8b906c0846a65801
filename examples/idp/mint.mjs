// Crafts JWS compact tokens for tests, including the malformed and hostile ones a real provider
// never issues.
//
//   echo '[{"key": <private JWK>, "alg": "RS256", "header": {"kid": "k1"}, "claims": {...}}]' \
//     | node mint.mjs
//   -> ["eyJ...", ...]   (one token per spec, same order)
//
// A spec:
//   alg                  how to sign: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512
//                        EdDSA Ed25519 HS256 HS384 HS512 none. Default: the key's own `alg`.
//   key                  private JWK for the asymmetric algorithms (null otherwise).
//   header               extra or overriding protected-header members, written as given (kid,
//                        typ, crit, jku, x5u, even a different `alg` than the one signing).
//                        The header is {"alg": alg, ...header}; no `typ` unless you give one.
//   claims               the payload object.
//   header_raw, payload_raw
//                        strings used verbatim instead of JSON-encoding header / claims (for
//                        duplicate members, bad JSON, ...).
//   hmac_secret_b64url   the HMAC secret for HS*.
//   hmac_secret_from_public_pem_of
//                        a JWK: the HMAC secret is the UTF-8 bytes of its PUBLIC key as SPKI PEM
//                        (`-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----`, 64-char
//                        lines, no trailing newline, as jose's exportSPKI writes it): the
//                        classic RS256 -> HS256 algorithm-confusion attack.
//   raw_signature_b64url the third part, verbatim, instead of signing.
//
// The signature is computed by hand over exactly `b64url(header).b64url(payload)`, so headers
// that jose's own signer would refuse (unknown `crit`, `alg` differing from the key, ...) are
// still possible; keys are imported with jose. `alg: none` gives `header.payload.` (empty
// signature).
import { createHmac, createPublicKey, webcrypto } from 'node:crypto';

import { base64url, exportSPKI, importJWK } from 'jose';

const { subtle } = webcrypto;

const enc = (s) => base64url.encode(new TextEncoder().encode(s));

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

function publicJwk(jwk) {
  const out = { ...jwk };
  for (const m of PRIVATE_MEMBERS) delete out[m];
  delete out.key_ops;
  return out;
}

async function publicPem(jwk) {
  // Through node's KeyObject: works for RSA, EC and OKP alike and whatever `alg` the JWK names.
  const keyObject = createPublicKey({ key: publicJwk(jwk), format: 'jwk' });
  return (await exportSPKI(keyObject)).trimEnd();
}

// WebCrypto sign parameters per JWS algorithm.
function signParams(alg) {
  const bits = alg.slice(2);
  switch (alg.slice(0, 2)) {
    case 'RS': return { name: 'RSASSA-PKCS1-v1_5' };
    case 'PS': return { name: 'RSA-PSS', saltLength: Number(bits) / 8 };
    case 'ES': return { name: 'ECDSA', hash: `SHA-${bits}` };
    default:
      if (alg === 'EdDSA' || alg === 'Ed25519') return { name: 'Ed25519' };
      throw new Error(`unsupported alg ${alg}`);
  }
}

async function signature(spec, alg, signingInput) {
  if (typeof spec.raw_signature_b64url === 'string') return spec.raw_signature_b64url;
  if (alg === 'none') return '';
  const data = new TextEncoder().encode(signingInput);
  if (alg.startsWith('HS')) {
    let secret;
    if (spec.hmac_secret_from_public_pem_of) {
      secret = Buffer.from(await publicPem(spec.hmac_secret_from_public_pem_of), 'utf8');
    } else if (typeof spec.hmac_secret_b64url === 'string') {
      secret = Buffer.from(base64url.decode(spec.hmac_secret_b64url));
    } else {
      throw new Error(`${alg} needs hmac_secret_b64url or hmac_secret_from_public_pem_of`);
    }
    return base64url.encode(createHmac(`sha${alg.slice(2)}`, secret).update(data).digest());
  }
  if (!spec.key) throw new Error(`${alg} needs a private JWK in "key"`);
  // importJWK checks that the key fits the algorithm; `alg` on the JWK is ignored here so that
  // a key can sign with another algorithm of its family (e.g. an RS256 key signing PS256).
  const { alg: _ignored, key_ops: _ops, use: _use, ...jwk } = spec.key;
  const key = await importJWK(jwk, alg, { extractable: false });
  const sig = await subtle.sign(signParams(alg), key, data);
  return base64url.encode(new Uint8Array(sig));
}

async function mint(spec) {
  if (spec === null || typeof spec !== 'object') throw new Error('each spec must be an object');
  const alg = spec.alg ?? spec.key?.alg;
  if (typeof alg !== 'string') throw new Error('spec has no alg (and its key names none)');
  const header = typeof spec.header_raw === 'string'
    ? spec.header_raw
    : JSON.stringify({ alg, ...(spec.header ?? {}) });
  const payload = typeof spec.payload_raw === 'string'
    ? spec.payload_raw
    : JSON.stringify(spec.claims ?? {});
  const signingInput = `${enc(header)}.${enc(payload)}`;
  return `${signingInput}.${await signature(spec, alg, signingInput)}`;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

try {
  const specs = JSON.parse(await readStdin());
  if (!Array.isArray(specs)) throw new Error('stdin must be a JSON array of specs');
  const tokens = [];
  for (const [i, spec] of specs.entries()) {
    try {
      tokens.push(await mint(spec));
    } catch (err) {
      throw new Error(`spec ${i}: ${err.message}`);
    }
  }
  process.stdout.write(`${JSON.stringify(tokens)}\n`);
} catch (err) {
  console.error(`mint: ${err.message}`);
  process.exit(1);
}
