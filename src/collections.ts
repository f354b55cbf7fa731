// Container helpers of the Raft library (the lowest layer) that the layers above share, so that
// http/ and dns/ need not reach into raft/ for them (as src/log.ts does for the log throttle).

/** Deletes a Map's or Set's oldest key in O(1) amortized (see raft/shift-oldest.ts for why). */
export { shiftOldest } from '../raft/shift-oldest.ts';
