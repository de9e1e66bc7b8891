// Mints and verifies JWTs with Node's `jsonwebtoken` (the library the real
// NestJS stack uses), so chorus's tests can compare it with the gateway.
//
// Usage:
//   node mint-token.mjs mint <secret> <kind>...     one {"kind","token"} line per kind
//   node mint-token.mjs verify <secret> <token>...  one {"ok":true,"payload"} or
//                                                   {"ok":false,"error"} line per token
//                                                   (jwt.verify with default options)
// Kinds: valid, hs384, hs512, expired, nbf, wrong-secret, no-exp, string
// (jwt.sign("just-a-string", secret): the payload is the bare text),
// buffer-array (a Buffer payload holding "[1]"), huge-exp (exp 1e19), alg-none.
import jwt from "jsonwebtoken";

const [mode, secret, ...rest] = process.argv.slice(2);
if (!secret || !["mint", "verify"].includes(mode)) {
  console.error("usage: node mint-token.mjs mint|verify <secret> <kind|token>...");
  process.exit(2);
}

const now = Math.floor(Date.now() / 1000);
const sub = "node-user";
const kinds = {
  valid: () => jwt.sign({ sub, exp: now + 3600 }, secret),
  hs384: () => jwt.sign({ sub, exp: now + 3600 }, secret, { algorithm: "HS384" }),
  hs512: () => jwt.sign({ sub, exp: now + 3600 }, secret, { algorithm: "HS512" }),
  expired: () => jwt.sign({ sub, exp: now - 3600 }, secret),
  nbf: () => jwt.sign({ sub, nbf: now + 3600, exp: now + 7200 }, secret),
  "wrong-secret": () => jwt.sign({ sub, exp: now + 3600 }, "not-the-secret"),
  "no-exp": () => jwt.sign({ sub }, secret, { noTimestamp: true }),
  string: () => jwt.sign("just-a-string", secret),
  "buffer-array": () => jwt.sign(Buffer.from("[1]"), secret),
  "huge-exp": () => jwt.sign({ sub, exp: 1e19 }, secret),
  "alg-none": () => jwt.sign({ sub, exp: now + 3600 }, null, { algorithm: "none" }),
};

for (const arg of rest) {
  if (mode === "mint") {
    const make = kinds[arg];
    if (!make) {
      console.error(`unknown kind ${arg}; known: ${Object.keys(kinds).join(", ")}`);
      process.exit(2);
    }
    console.log(JSON.stringify({ kind: arg, token: make() }));
  } else {
    try {
      console.log(JSON.stringify({ ok: true, payload: jwt.verify(arg, secret) }));
    } catch (err) {
      console.log(JSON.stringify({ ok: false, error: err.message }));
    }
  }
}
