// Single-server membership changes: validation when proposed, and the total, deterministic
// function that applies a change found in the log.

import { SiderError } from './errors.ts';
import { cloneMembership } from './types.ts';
import type { ConfChange, Membership, NodeId } from './types.ts';

export function isVoter(m: Membership, id: NodeId): boolean {
  return m.voters.includes(id);
}

export function isMember(m: Membership, id: NodeId): boolean {
  return m.voters.includes(id) || m.learners.includes(id);
}

/** Throws SIDER_CONF_CHANGE_INVALID naming the problem when `cc` cannot apply to `m`. */
export function validateConfChange(m: Membership, cc: ConfChange): void {
  const fail = (why: string): never => {
    throw new SiderError('SIDER_CONF_CHANGE_INVALID', `${cc.op} ${JSON.stringify(cc.id)}: ${why}`);
  };
  if (typeof cc.id !== 'string' || cc.id.length === 0 || cc.id.length > 128) fail('ID must be 1-128 characters');
  switch (cc.op) {
    case 'addLearner':
      if (!cc.addr) fail('address required');
      if (isMember(m, cc.id)) fail('already a member');
      if (m.removed.includes(cc.id)) fail('ID was used by a removed node; node IDs are never reused');
      return;
    case 'promote':
      if (!m.learners.includes(cc.id)) fail('not a learner');
      return;
    case 'remove':
      if (!isMember(m, cc.id)) fail('not a member');
      if (m.voters.length === 1 && m.voters[0] === cc.id) fail('cannot remove the last voter');
      return;
    case 'bootstrap':
      if (m.voters.length + m.learners.length > 0) fail('configuration is not empty');
      if (m.removed.includes(cc.id)) fail('ID was used by a removed node; node IDs are never reused');
      if (!cc.addr) fail('address required');
      return;
  }
}

/** Applies `cc` (already in the log). Total: a change that does not fit leaves `m` unchanged. */
export function applyConfChange(m: Membership, cc: ConfChange): Membership {
  try {
    validateConfChange(m, cc);
  } catch {
    return m;
  }
  const next = cloneMembership(m);
  switch (cc.op) {
    case 'addLearner':
      next.learners.push(cc.id);
      next.addrs[cc.id] = cc.addr!;
      break;
    case 'promote':
      next.learners = next.learners.filter((x) => x !== cc.id);
      next.voters.push(cc.id);
      break;
    case 'remove':
      next.voters = next.voters.filter((x) => x !== cc.id);
      next.learners = next.learners.filter((x) => x !== cc.id);
      delete next.addrs[cc.id];
      next.removed.push(cc.id);
      break;
    case 'bootstrap':
      next.voters.push(cc.id);
      next.addrs[cc.id] = cc.addr!;
      break;
  }
  return next;
}
