// The Raft library's public surface.
export { RaftCore } from './core.ts';
export type { CoreConfig, CoreInit, CoreStatus, PeerStatus } from './core.ts';
export { RaftNode } from './node.ts';
export type { Logger, LogLevel, ProposeResult, RaftEvent, RaftNodeOptions } from './node.ts';
export { LevelStorage } from './level-storage.ts';
export { FileSnapshotStore } from './file-snapshot-store.ts';
export { MemoryStorage, MemorySnapshotStore } from './memory-storage.ts';
export { HttpTransport } from './http-transport.ts';
export type { HttpTransportOptions } from './http-transport.ts';
export { MemoryNetwork, MemoryTransport } from './memory-transport.ts';
export { SiderError, isSiderError, InvariantError } from './errors.ts';
export type { SiderErrorCode } from './errors.ts';
export type * from './ports.ts';
export type * from './types.ts';
