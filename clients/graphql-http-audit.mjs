// The GraphQL-over-HTTP spec's reference audit (npm graphql-http, auditServer) against a
// GraphQL endpoint: `node clients/graphql-http-audit.mjs http://127.0.0.1:4000/graphql`.
// Prints one JSON line {ok, warn, error, problems}; exits 1 on any error or warning.
//
// Every request carries `apollo-require-preflight`, as a browser client of the gateway does:
// the gateway refuses (as Apollo Server does) a GET that a cross-site form could send.
import { auditServer } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node graphql-http-audit.mjs <graphql url>");
  process.exit(2);
}

const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...(init.headers ?? {}), "apollo-require-preflight": "true" } });

const results = await auditServer({ url, fetchFn });
const count = (status) => results.filter((r) => r.status === status).length;
const problems = [];
for (const result of results) {
  if (result.status !== "ok") {
    let body = "";
    try {
      body = await result.response.text();
    } catch {
      body = "(no body)";
    }
    problems.push({ id: result.id, name: result.name, status: result.status, reason: result.reason, body });
  }
}
console.log(JSON.stringify({ ok: count("ok"), warn: count("warn"), error: count("error"), problems }));
process.exit(problems.length ? 1 : 0);
