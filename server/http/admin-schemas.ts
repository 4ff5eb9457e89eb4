/**
 * JSON schemas of the admin API (/api/v1/*): fastify validates the query strings with
 * them and serializes the replies through them (fast-json-stringify: a field missing
 * from a schema is never sent), tests validate live replies against them, and README.md
 * describes them. Times: `...AtMs` are Unix epoch milliseconds, `...Ms` durations.
 */

const int = { type: 'integer' } as const;
const num = { type: 'number' } as const;
const str = { type: 'string' } as const;
const bool = { type: 'boolean' } as const;

function object(properties: Record<string, unknown>, optional: string[] = []) {
  return {
    type: 'object',
    additionalProperties: false,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    properties,
  } as const;
}

export const errorSchema = object({ statusCode: int, error: str, message: str }, ['error']);

export const volumeSchema = object({
  uuid: str,
  volumePath: str,
  formatVersion: int,
  sizeBytes: int,
  blockSize: int,
  blocks: object({
    total: int,
    free: int,
    used: int,
    /** null while the first count after mount runs. */
    unwritten: { type: ['integer', 'null'] },
  }),
  files: int,
  maxFiles: int,
  journal: object({ blocks: int, commits: int, blocksLogged: int, lastCommitMs: num }),
  mount: object({ wasClean: bool, journal: { type: 'string', enum: ['clean', 'empty', 'discarded', 'replayed'] }, orphansFreed: int, mountMs: num }),
  server: object({ version: str, pid: int, grpcAddress: str, httpAddress: str, startedAtMs: int, uptimeMs: int }),
});

export const fileSchema = object({
  ino: int,
  name: str,
  sizeBytes: int,
  blocks: int,
  generation: int,
  mtimeMs: int,
  ctimeMs: int,
  /** Mapping entries of the file's address space (0 when nobody maps it). */
  mappedPages: int,
  pinnedPages: int,
  /** Sessions holding PTEs on the file. */
  mappers: int,
});

export const filesQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    prefix: { type: 'string', maxLength: 255 },
    page_token: { type: 'string', maxLength: 1024 },
    page_size: { type: 'integer', minimum: 0 },
  },
} as const;

export const filesSchema = object({ files: { type: 'array', items: fileSchema }, nextPageToken: str });

export const sessionSchema = object({
  /** The first ADMIN_ID_PREFIX_CHARS hex digits of the session id. */
  id: str,
  clientName: str,
  state: { type: 'string', enum: ['open', 'ending', 'ended'] },
  leaseMs: int,
  openedAtMs: int,
  expiresAtMs: int,
  mappings: int,
  pins: int,
});

export const sessionsSchema = object({ total: int, sessions: { type: 'array', items: sessionSchema } });

export const pinSchema = object({
  id: str,
  sessionId: str,
  clientName: str,
  ino: int,
  firstPgoff: int,
  npages: int,
  pinnedBlocks: int,
  writable: bool,
  state: { type: 'string', enum: ['active', 'recalled', 'revoked', 'released'] },
  createdAtMs: int,
  ageMs: int,
  leaseMs: int,
  dmaInFlight: int,
});

export const rowsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1 } },
} as const;

export const pinsSchema = object({
  total: int,
  pinnedBlocks: int,
  revocations: int,
  recalls: int,
  pins: { type: 'array', items: pinSchema },
});

export const lockSchema = object({
  ino: int,
  pgoff: int,
  state: { type: 'string', enum: ['EMPTY', 'ZERO', 'MAPPED'] },
  heldMs: num,
  waiters: int,
  /** How long the longest waiter has waited (0 without waiters). */
  longestWaitMs: num,
});

export const locksSchema = object({
  held: int,
  waiters: int,
  locks: { type: 'array', items: lockSchema },
});

export const nbdConnectionSchema = object({
  id: int,
  peer: str,
  /** The export (file name); null while the connection negotiates. */
  export: { type: ['string', 'null'] },
  openedAtMs: int,
  ageMs: int,
  inFlight: int,
});

export const nbdSchema = object({
  /** host:port of the NBD listener; null when the server runs without one (--nbd off). */
  address: { type: ['string', 'null'] },
  total: int,
  connections: { type: 'array', items: nbdConnectionSchema },
});

export const clusterSchema = object({
  /** False for a server started without --etcd (the rest is then empty). */
  enabled: bool,
  self: { type: ['string', 'null'] },
  fenced: bool,
  nodes: {
    type: 'array',
    items: object({
      name: str, state: { type: 'string', enum: ['live', 'down'] }, grpc: str, capacityBytes: int, freeBytes: int, files: int,
      /** A drain of the node in progress, or null. */
      drain: {
        anyOf: [{ type: 'null' }, object({ filesTotal: int, filesMoved: int, filesFailed: int, bytesTotal: int, bytesCopied: int, current: str, currentTarget: str })],
      },
    }),
  },
});

export const healthSchema = object({ status: { type: 'string', enum: ['ok'] }, uptimeMs: int });

export const readySchema = object({
  ready: bool,
  checks: object({ volumeMounted: bool, journalReplayed: bool, acceptingCalls: bool }),
});
