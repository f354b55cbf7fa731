// The project's one error hierarchy (CONVENTIONS "Errors"). It lives in raft/ because raft/ is the
// lowest layer and may import nothing above it; src/, http/ and dns/ re-use it.

/** Stable codes callers match on; messages are for people and may change. */
export type SiderErrorCode =
  | 'SIDER_NOT_LEADER'
  | 'SIDER_NO_LEADER'
  | 'SIDER_TRANSFER_IN_PROGRESS'
  | 'SIDER_PROPOSAL_DROPPED'
  | 'SIDER_TOO_MANY_UNCOMMITTED'
  | 'SIDER_OVERLOADED'
  | 'SIDER_CONF_CHANGE_PENDING'
  | 'SIDER_CONF_CHANGE_INVALID'
  | 'SIDER_TIMEOUT'
  | 'SIDER_STOPPED'
  | 'SIDER_BAD_REQUEST'
  | 'SIDER_UNAUTHENTICATED'
  | 'SIDER_FOREIGN_CLUSTER'
  | 'SIDER_CORRUPT_STORE'
  | 'SIDER_CONFIG'
  | 'SIDER_INTERNAL';

const defaultStatus: Record<SiderErrorCode, number> = {
  SIDER_NOT_LEADER: 503,
  SIDER_NO_LEADER: 503,
  SIDER_TRANSFER_IN_PROGRESS: 503,
  SIDER_PROPOSAL_DROPPED: 503,
  SIDER_TOO_MANY_UNCOMMITTED: 429,
  SIDER_OVERLOADED: 429,
  SIDER_CONF_CHANGE_PENDING: 409,
  SIDER_CONF_CHANGE_INVALID: 400,
  SIDER_TIMEOUT: 504,
  SIDER_STOPPED: 503,
  SIDER_BAD_REQUEST: 400,
  SIDER_UNAUTHENTICATED: 401,
  SIDER_FOREIGN_CLUSTER: 403,
  SIDER_CORRUPT_STORE: 500,
  SIDER_CONFIG: 400,
  SIDER_INTERNAL: 500,
};

export interface SiderErrorOptions {
  status?: number;
  cause?: unknown;
  /** Extra machine-readable detail (e.g. the leader's id for SIDER_NOT_LEADER). */
  detail?: Record<string, unknown>;
}

export class SiderError extends Error {
  readonly code: SiderErrorCode;
  readonly status: number;
  readonly detail: Record<string, unknown>;

  constructor(code: SiderErrorCode, message: string, opts: SiderErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SiderError';
    this.code = code;
    this.status = opts.status ?? defaultStatus[code];
    this.detail = opts.detail ?? {};
  }
}

export function isSiderError(e: unknown, code?: SiderErrorCode): e is SiderError {
  return e instanceof SiderError && (code === undefined || e.code === code);
}

/** A broken invariant: the node must stop rather than keep serving (CONVENTIONS "Errors"). */
export function invariant(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InvariantError(message);
}

export class InvariantError extends Error {
  constructor(message: string) {
    super(`raft invariant violated: ${message}`);
    this.name = 'InvariantError';
  }
}
