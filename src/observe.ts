// What a server logs and counts per event (issue #6), kept out of the deterministic state machine:
// registrations and deregistrations on the server that received them (who, what, index), check
// transitions, TTL expiries and reaped instances on the leader, and Raft's role, membership and
// snapshot events.

import type { Logger, RaftEvent } from '../raft/node.ts';
import { logsAt } from './log.ts';
import type { ServerMetrics } from './metrics.ts';
import type { ApplyResult, HealthStateReader, RegistryCommand } from './registry/model.ts';
import type { RegistryService } from './registry/service.ts';
import type { HealthProposeReason } from './health/leader.ts';
import { TTL_EXPIRED_OUTPUT } from './health/leader.ts';

type WriteReply = Awaited<ReturnType<RegistryService['write']>>;

export interface WriteObserverOptions {
  metrics: ServerMetrics;
  log: Logger;
  /** The client that sent the write being applied (its address), when known. */
  who?: () => string | undefined;
}

/** Log fields and counters of one applied client write; nothing for commands clients do not send. */
function describeWrite(cmd: RegistryCommand, reply: WriteReply, who: string | undefined): { msg: string; fields: Record<string, unknown> } | undefined {
  const base = { index: reply.index, changed: reply.result.ok && reply.result.changed, ...(who ? { remote: who } : {}) };
  switch (cmd.type) {
    case 'register':
      return {
        msg: 'registered service instance',
        fields: { ns: cmd.ns, service: cmd.instance.Service, id: cmd.instance.ID, node: cmd.node, address: cmd.instance.Address, port: cmd.instance.Port, checks: cmd.checks.length, ...base },
      };
    case 'deregister':
      return { msg: 'deregistered service instance', fields: { ns: cmd.ns, service: cmd.service, id: cmd.id, ...base } };
    case 'addCheck':
      return { msg: 'registered check', fields: { ns: cmd.ns, service: cmd.service, id: cmd.id, checkId: cmd.check.CheckID, type: cmd.check.Type, ...base } };
    case 'removeCheck':
      return { msg: 'deregistered check', fields: { ns: cmd.ns, checkId: cmd.checkId, ...base } };
    default:
      return undefined;
  }
}

/**
 * The same RegistryService, whose successful writes are logged (one line each: who, what, index)
 * and counted. Handed to the HTTP API, so a write is reported once, by the server that received
 * it (a follower forwards to the leader's internal API, which does not go through here).
 */
export function observeWrites(service: RegistryService, opts: WriteObserverOptions): RegistryService {
  const { metrics, log } = opts;
  // The level is the logger's for life: at warn (as the benchmarks run) no line's fields are built.
  const logInfo = logsAt(log, 'info');
  return {
    get reader() {
      return service.reader;
    },
    get nodeName() {
      return service.nodeName;
    },
    async write(cmd, rid) {
      const reply = await service.write(cmd, rid);
      if (reply.result.ok) {
        if (cmd.type === 'register') metrics.registrations.inc();
        else if (cmd.type === 'deregister' && reply.result.changed) metrics.deregistrations.inc({ source: 'api' });
        const d = logInfo ? describeWrite(cmd, reply, opts.who?.()) : undefined;
        if (d) log('info', d.msg, d.fields);
      }
      return reply;
    },
    readBarrier: (c) => service.readBarrier(c),
    readMeta: () => service.readMeta(),
    leaderAddr: () => service.leaderAddr(),
    peers: () => service.peers(),
    raftConfiguration: () => service.raftConfiguration(),
    joinServer: (id, addr) => service.joinServer(id, addr),
    removeServer: (id) => service.removeServer(id),
  };
}

export interface HealthObserverOptions {
  metrics: ServerMetrics;
  log: Logger;
  state: HealthStateReader;
}

/**
 * Wraps the leader's health proposals (LeaderHealthOptions.propose): each applied status change
 * is one log line (check, old and new status, index, why) and a counter; a TTL expiry and an
 * instance removed by DeregisterCriticalServiceAfter have their own line and counter.
 */
export function observeHealthProposals(
  propose: (cmd: RegistryCommand) => Promise<{ result: ApplyResult; index: number }>,
  opts: HealthObserverOptions,
): (cmd: RegistryCommand, reason?: HealthProposeReason) => Promise<ApplyResult> {
  const { metrics, log, state } = opts;
  return async (cmd, reason) => {
    const before = cmd.type === 'checkStatus' ? state.check(cmd.ns, cmd.checkId) : undefined;
    const { result, index } = await propose(cmd);
    if (!result.ok || !result.changed) return result;
    if (cmd.type === 'checkStatus' && (before?.Status !== cmd.status || reason === 'ttl-expired')) {
      metrics.checkTransitions.inc({ status: cmd.status });
      const fields = {
        ns: cmd.ns,
        checkId: cmd.checkId,
        service: before?.ServiceName,
        id: before?.ServiceID,
        from: before?.Status,
        to: cmd.status,
        output: cmd.output.slice(0, 200),
        index,
        reason: reason ?? 'renewal',
      };
      if (reason === 'ttl-expired' && cmd.output === TTL_EXPIRED_OUTPUT) {
        metrics.ttlExpiries.inc();
        log('info', 'health: TTL expired', fields);
      } else {
        log('info', 'health: check status changed', fields);
      }
    } else if (cmd.type === 'deregister') {
      metrics.deregistrations.inc({ source: 'critical_timeout' });
      log('info', 'deregistered service instance', { ns: cmd.ns, service: cmd.service, id: cmd.id, index, changed: true, reason: reason ?? 'critical_timeout' });
    }
    return result;
  };
}

/** Raft events into metrics and log lines (membership changes; role and snapshot lines come from the node). */
export function observeRaftEvents(metrics: ServerMetrics, log: Logger): (ev: RaftEvent) => void {
  return (ev) => {
    switch (ev.type) {
      case 'leader':
        metrics.leaderChanged(ev.leader);
        break;
      case 'membership':
        log('info', 'raft: membership changed', {
          index: ev.index,
          voters: ev.membership.voters,
          learners: ev.membership.learners,
          removed: ev.membership.removed,
        });
        break;
      case 'snapshot':
        metrics.snapshotTaken(ev.bytes, ev.ms);
        break;
      case 'snapshot-installed':
        metrics.snapshotInstalled();
        break;
      default:
        break;
    }
  };
}
