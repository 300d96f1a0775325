"""Persisted documents: Apollo's automatic persisted queries (APQ) and trusted documents.

APQ (protocol version 1): a request's `extensions.persistedQuery` is
`{"version": 1, "sha256Hash": "<hex sha-256 of the document>"}`.
- the hash alone: the document kept under it runs; unknown, the answer is the GraphQL error
  `PERSISTED_QUERY_NOT_FOUND`, and the client sends the hash again with the document;
- the hash and the document: the hash is checked, the document runs, and once it has parsed and
  validated it is kept under its hash (`register`), so the hash alone runs it from then on.
Documents live in Redis (`gateway:apq:<hash>`), shared by every replica, each kept
`APQ_TTL_SECONDS` after its last use (a read renews it: least recently used go first); each
replica also keeps the last `APQ_LOCAL_CACHE_SIZE` in memory (a hash names one document
forever, so that copy is never stale) and a repeated hash costs no Redis round trip. Redis down
only means "not found": the client sends the document and the operation runs.

Trusted documents (`TRUSTED_DOCUMENTS_ONLY=true`): only the documents of the manifest
(`TRUSTED_DOCUMENTS_MANIFEST`, written by `python -m graphql_gateway.trusted_documents`) run,
by hash or by text; an unknown hash is `PERSISTED_QUERY_NOT_FOUND`, any other text `FORBIDDEN`;
nothing is registered.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from graphql_gateway.settings import GatewaySettings
from shared.errors import (
    AppError,
    BadUserInput,
    Forbidden,
    PersistedQueryNotFound,
    PersistedQueryNotSupported,
)
from shared.logging import get_logger

log = get_logger(__name__)

APQ_VERSION = 1
KEY_PREFIX = "gateway:apq:"
# The format of Apollo's persisted-query manifests (@apollo/generate-persisted-query-manifest).
MANIFEST_FORMAT = "apollo-persisted-query-manifest"
DEFAULT_MANIFEST = Path(__file__).resolve().parent / "trusted-documents.json"
_SHA256_HEX_LENGTH = 64
NOT_TRUSTED_MESSAGE = "Only the operations of the trusted-documents manifest may run here."
HASH_MISMATCH_MESSAGE = "The persisted query's sha256Hash does not match the query."


def document_hash(document: str) -> str:
    """The hex sha-256 of a document's text, as Apollo's clients compute it."""
    return hashlib.sha256(document.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document an operation runs, and the hash to keep it under once it validated."""

    query: str | None
    register: str | None = None


def load_manifest(path: Path) -> dict[str, str]:
    """Hash -> document of a persisted-query manifest; each hash checked against its body."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not an {MANIFEST_FORMAT}")
    documents: dict[str, str] = {}
    for operation in manifest["operations"]:
        body = str(operation["body"])
        if document_hash(body) != operation["id"]:
            raise ValueError(f"{path}: the id of {operation.get('name')} is not its sha256")
        documents[operation["id"]] = body
    return documents


class LocalDocuments:
    """The documents this replica used last, by hash (LRU)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._documents: OrderedDict[str, str] = OrderedDict()

    def get(self, sha: str) -> str | None:
        document = self._documents.get(sha)
        if document is not None:
            self._documents.move_to_end(sha)
        return document

    def put(self, sha: str, document: str) -> None:
        self._documents[sha] = document
        self._documents.move_to_end(sha)
        while len(self._documents) > self._size:
            self._documents.popitem(last=False)


def _persisted_hash(extensions: dict[str, Any] | None) -> str | None:
    """The hash of `extensions.persistedQuery` (None without one); raises when it is not
    version 1 or not a sha-256."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != APQ_VERSION:
        raise PersistedQueryNotSupported()
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or len(sha) != _SHA256_HEX_LENGTH:
        raise BadUserInput("The persisted query's sha256Hash must be a hex sha-256.")
    return sha.lower()


class PersistedQueries:
    """Resolves the document of an operation from its persisted-query hash."""

    def __init__(
        self,
        client: redis.Redis | None,
        *,
        ttl_seconds: int,
        local_size: int,
        trusted: dict[str, str] | None = None,
    ) -> None:
        # No client: APQ is off (a hash answers PERSISTED_QUERY_NOT_SUPPORTED).
        self._client = client
        self._ttl = ttl_seconds
        self._local = LocalDocuments(local_size)
        self._trusted = trusted

    @property
    def trusted_only(self) -> bool:
        """Whether only the manifest's documents run."""
        return self._trusted is not None

    def known(self, sha: str) -> str | None:
        """The document of a hash if this replica has it at hand (no I/O)."""
        if self._trusted is not None:
            return self._trusted.get(sha)
        return self._local.get(sha)

    async def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> Resolved:
        """The document to run; raises the operation's error (not found, not trusted, ...)."""
        sha = _persisted_hash(extensions)
        if self._trusted is not None:
            return self._resolve_trusted(query, sha)
        if sha is None:
            return Resolved(query)
        if self._client is None:
            raise PersistedQueryNotSupported()
        if query is None:
            document = self._local.get(sha) or await self._fetch(sha)
            if document is None:
                raise PersistedQueryNotFound()
            return Resolved(document)
        if document_hash(query) != sha:
            raise BadUserInput(HASH_MISMATCH_MESSAGE)
        return Resolved(query, register=None if self._local.get(sha) == query else sha)

    def _resolve_trusted(self, query: str | None, sha: str | None) -> Resolved:
        assert self._trusted is not None
        if query is None:
            document = self._trusted.get(sha) if sha is not None else None
            if document is None:
                raise PersistedQueryNotFound()
            return Resolved(document)
        actual = document_hash(query)
        if sha is not None and actual != sha:
            raise BadUserInput(HASH_MISMATCH_MESSAGE)
        if actual not in self._trusted:
            raise Forbidden(NOT_TRUSTED_MESSAGE)
        return Resolved(query)

    async def _fetch(self, sha: str) -> str | None:
        try:
            # GETEX renews the entry: documents in use stay, unused ones expire.
            raw = await self._client.getex(KEY_PREFIX + sha, ex=self._ttl)  # type: ignore[union-attr]
        except (redis.RedisError, OSError) as exc:
            log.warning("redis unavailable; persisted query not looked up", error=str(exc))
            return None
        if raw is None:
            return None
        document = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._local.put(sha, document)
        return document

    async def register(self, sha: str, document: str) -> None:
        """Keep a document (already checked against its hash, and valid) under its hash."""
        self._local.put(sha, document)
        if self._client is None:
            return
        try:
            await self._client.set(KEY_PREFIX + sha, document.encode(), ex=self._ttl)
        except (redis.RedisError, OSError) as exc:
            log.warning("redis unavailable; persisted query not kept", error=str(exc))


def persisted_queries(settings: GatewaySettings, client: redis.Redis) -> PersistedQueries:
    """The gateway's persisted queries: the manifest's only (TRUSTED_DOCUMENTS_ONLY), or APQ
    in Redis (APQ_ENABLED), or none (a hash answers PERSISTED_QUERY_NOT_SUPPORTED)."""
    trusted = None
    if settings.trusted_documents_only:
        manifest = settings.trusted_documents_manifest or DEFAULT_MANIFEST
        trusted = load_manifest(manifest)
        log.info("only trusted documents run", manifest=str(manifest), documents=len(trusted))
    return PersistedQueries(
        client if settings.apq_enabled else None,
        ttl_seconds=settings.apq_ttl_seconds,
        local_size=settings.apq_local_cache_size,
        trusted=trusted,
    )


def error_of(exc: AppError) -> dict[str, Any]:
    """An AppError as a GraphQL error entry of a response body."""
    return {"message": exc.message, "extensions": {"code": exc.code.value}}
