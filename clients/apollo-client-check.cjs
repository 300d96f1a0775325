// A real Apollo Client (npm @apollo/client 3) against the gateway, set up as production
// clients are: the batch HTTP link for a registration (sent as one JSON array with another
// operation), then the persisted-query link over GET for reads (hash only; the full query
// once when the gateway does not know the hash yet).
// `node clients/apollo-client-check.cjs http://127.0.0.1:4000/graphql`: prints one JSON line
// with what was sent and read; exits 1 when anything is not as expected.
const { createHash } = require("node:crypto");
const { ApolloClient, InMemoryCache, HttpLink, gql } = require("@apollo/client/core");
const { BatchHttpLink } = require("@apollo/client/link/batch-http");
const { createPersistedQueryLink } = require("@apollo/client/link/persisted-queries");

const uri = process.argv[2];
const sent = [];
const recordingFetch = (input, init = {}) => {
  const url = new URL(String(input));
  sent.push({
    method: init.method ?? "GET",
    batch: typeof init.body === "string" && init.body.startsWith("["),
    hasQuery: url.searchParams.has("query") || (typeof init.body === "string" && init.body.includes('"query"')),
    persisted: url.searchParams.has("extensions") || (typeof init.body === "string" && init.body.includes("persistedQuery")),
  });
  return fetch(input, init);
};

// The same operations as clients/documents/apollo-client.graphql (the trusted documents).
const REGISTER = gql`
  mutation Register($name: String!, $email: String!, $password: String!) {
    registerUser(name: $name, email: $email, password: $password) {
      token
      user { id email __typename }
      __typename
    }
  }
`;
const PING = gql`query Ping { __typename }`;
const DETAILS = gql`query Me { getUserDetails { id email __typename } }`;

function fail(message, extra) {
  console.log(JSON.stringify({ ok: false, message, sent, ...extra }));
  process.exit(1);
}

async function main() {
  const batching = new ApolloClient({
    cache: new InMemoryCache(),
    link: new BatchHttpLink({ uri, fetch: recordingFetch, batchMax: 5, batchInterval: 20 }),
  });
  const email = `apollo-${Date.now()}-${Math.floor(Math.random() * 1e9)}@example.com`;
  const [registered, ping] = await Promise.all([
    batching.mutate({ mutation: REGISTER, variables: { name: "Apollo", email, password: "apollo-Password-123!" } }),
    batching.query({ query: PING }),
  ]);
  const { token, user } = registered.data.registerUser;
  if (user.email !== email || ping.data.__typename !== "Query") fail("batch answers", { registered, ping });
  if (!sent.some((request) => request.batch)) fail("the batch link sent no batch");

  const sha256 = (text) => createHash("sha256").update(text).digest("hex");
  const reader = () =>
    new ApolloClient({
      cache: new InMemoryCache(),
      link: createPersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
        new HttpLink({ uri, fetch: recordingFetch, headers: { authorization: `Bearer ${token}` } }),
      ),
    });
  const before = sent.length;
  const first = await reader().query({ query: DETAILS, fetchPolicy: "network-only" });
  const second = await reader().query({ query: DETAILS, fetchPolicy: "network-only" });
  for (const answer of [first, second]) {
    if (answer.data.getUserDetails.id !== user.id) fail("read back another user", { answer });
  }
  const reads = sent.slice(before);
  const last = reads[reads.length - 1];
  if (!(reads[0].method === "GET" && reads[0].persisted && !reads[0].hasQuery)) fail("first read not a hash by GET");
  if (!(last.method === "GET" && last.persisted && !last.hasQuery)) fail("second read not a hash by GET");
  console.log(JSON.stringify({ ok: true, userId: user.id, sent }));
}

main().catch((error) => fail(String(error && error.stack ? error.stack : error)));
